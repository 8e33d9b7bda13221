"""Semantic IDs (TIGER): residual k-means and RQ-VAE codes, dedup, diagnostics, the on-disk
directory and its cache, and `genrecsys semantic-ids build|show`."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from genrecsys.cli.main import main
from genrecsys.data.schema import Dataset
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.errors import GenrecsysError
from genrecsys.generative import semantic_ids as sid_module
from genrecsys.generative.quantize import (QuantizeConfig, auto_codebook_size, balanced_assign, dedup, quantize,
                                           residual_kmeans)
from genrecsys.generative.semantic_ids import (SemanticIDConfig, build_semantic_ids, cf_vectors, format_stats,
                                               item_vectors, load_semantic_ids, semantic_texts)

RQVAE = dict(quantizer="rqvae", hidden=(32,), latent_dim=8, epochs=60, lr=1e-2)  # small and quick


def blobs(n_per: int = 30, n_blobs: int = 8, dim: int = 16, seed: int = 0) -> np.ndarray:
    """(n_per * n_blobs, dim) points around n_blobs well-separated centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_blobs, dim)) * 4
    return (np.repeat(centres, n_per, axis=0) + rng.standard_normal((n_per * n_blobs, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())  # 20 items "i1".."i20"


@pytest.fixture
def fake_text(monkeypatch):
    """Stub the text encoder: item i's vector is a fixed random row (the tests need no MiniLM)."""
    def vectors(split, model_dir=None, cache_dir=None):
        return np.random.default_rng(1).standard_normal((split.n_items, 8)).astype(np.float32)

    monkeypatch.setattr(sid_module, "text_vectors", vectors)


def _run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- quantizers
@pytest.mark.parametrize("kind", [{}, RQVAE])
def test_codes_are_unique_after_dedup_even_when_many_items_have_identical_vectors(kind):
    x = np.repeat(blobs(n_per=2, n_blobs=5), 12, axis=0)  # 10 distinct vectors, each 12 times
    codes, stats = quantize(x, QuantizeConfig(levels=2, codebook_size=4, **kind))
    assert codes.shape == (120, 3) and len({tuple(c) for c in codes.tolist()}) == 120
    assert stats["dedup_size"] >= 12 and stats["sizes"][-1] == stats["dedup_size"]
    assert codes[:, -1].max() == stats["dedup_size"] - 1


def test_dedup_numbers_items_sharing_a_code_in_item_order_and_is_size_one_without_collisions():
    codes, size = dedup(np.array([[5, 1], [2, 2], [5, 1], [2, 2], [5, 1], [0, 3]]))
    assert codes[:, -1].tolist() == [0, 0, 1, 1, 2, 0] and size == 3
    assert dedup(np.array([[0, 1], [1, 0]]))[1] == 1


def test_residual_kmeans_reconstruction_error_decreases_with_more_levels():
    x = blobs()
    errors = [quantize(x, QuantizeConfig(levels=n, codebook_size=8))[1]["reconstruction_error"] for n in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]
    q = residual_kmeans(x, 3, 8)
    assert q.error_by_level == sorted(q.error_by_level, reverse=True)
    assert q.error_by_level[-1] == pytest.approx(errors[2], rel=1e-5)


def test_balanced_kmeans_caps_every_bucket_at_ceil_n_over_k():
    x = np.vstack([blobs(n_per=60, n_blobs=1), blobs(n_per=5, n_blobs=4, seed=3)])  # one big cluster, 80 items
    plain, _ = quantize(x, QuantizeConfig(levels=2, codebook_size=8))
    balanced, stats = quantize(x, QuantizeConfig(levels=2, codebook_size=8, balanced=True))
    cap = math.ceil(80 / 8)
    for level in range(2):
        assert np.bincount(balanced[:, level]).max() <= cap
    assert stats["largest_bucket"] <= cap and stats["usage"][0] == 1.0
    assert np.bincount(plain[:, 0]).max() > cap  # without the cap the big cluster crowds one code


def test_balanced_assignment_takes_the_nearest_centroid_that_has_room():
    x = np.array([[0.0], [0.1], [0.2], [10.0]], dtype=np.float32)
    assert balanced_assign(x, np.array([[0.0], [10.0]], dtype=np.float32)).tolist() == [0, 0, 1, 1]


def test_rqvae_trains_is_deterministic_for_a_seed_and_gives_unique_codes():
    import torch

    x = blobs()
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    a, stats = quantize(x, QuantizeConfig(levels=2, codebook_size=8, **RQVAE))
    b, _ = quantize(x, QuantizeConfig(levels=2, codebook_size=8, **RQVAE))
    c, _ = quantize(x, QuantizeConfig(levels=2, codebook_size=8, seed=1, **RQVAE))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len({tuple(r) for r in a.tolist()}) == len(x)
    assert stats["reconstruction_error"] < 0.5 * stats["vector_variance"]  # it learned the blobs
    assert stats["epochs"] == 60 and stats["dead_code_resets"] >= 0
    # the caller's thread count and RNG are left as they were
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)


def test_residual_kmeans_is_deterministic_for_a_seed():
    x = blobs()
    a, _ = quantize(x, QuantizeConfig(levels=3, codebook_size=8))
    b, _ = quantize(x, QuantizeConfig(levels=3, codebook_size=8))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", [{}, {"balanced": True}, RQVAE])
def test_stats_are_present_and_sane(kind):
    x = blobs()
    _, s = quantize(x, QuantizeConfig(levels=3, codebook_size=8, **kind))
    for key in ("collision_rate", "usage", "perplexity", "reconstruction_error", "largest_bucket", "n_items",
                "seconds", "sizes", "dedup_size"):
        assert key in s, key
    assert s["n_items"] == len(x) and s["sizes"][:3] == [8, 8, 8]
    assert 0 <= s["collision_rate"] <= 1 and 1 <= s["largest_bucket"] <= len(x)
    assert len(s["usage"]) == len(s["perplexity"]) == 3
    assert all(0 < u <= 1 for u in s["usage"])
    assert all(1 <= p <= 8 + 1e-9 for p in s["perplexity"])
    assert s["reconstruction_error"] >= 0 and s["seconds"] >= 0
    json.dumps(s)  # stats.json must hold them
    table = format_stats(s)
    assert "collisions before dedup" in table and "perplexity" in table


def test_auto_codebook_size_is_tigers_256_on_large_catalogs_and_smaller_on_small_ones():
    assert auto_codebook_size(12_101) == 256 and auto_codebook_size(1_682) == 32 and auto_codebook_size(5) == 2
    _, s = quantize(blobs(), QuantizeConfig(levels=1))  # 240 items -> 4 codes
    assert s["codebook_size"] == 4


def test_fewer_items_than_codes_still_quantize():
    codes, s = quantize(blobs(n_per=1, n_blobs=3), QuantizeConfig(levels=2, codebook_size=16))
    assert codes.shape == (3, 3) and len({tuple(c) for c in codes.tolist()}) == 3 and s["sizes"][:2] == [16, 16]


@pytest.mark.parametrize("kwargs, message", [
    ({"quantizer": "vq"}, "quantizer must be one of"),
    ({"levels": 0}, "levels must be"),
    ({"codebook_size": 1}, "codebook_size must be"),
    ({"quantizer": "rqvae", "balanced": True}, "rkmeans quantizer only"),
])
def test_bad_quantizer_config_is_a_one_line_error(kwargs, message):
    with pytest.raises(GenrecsysError, match=message) as exc:
        QuantizeConfig(**kwargs)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"source": "image"}, "source must be one of"),
    ({"source": "cf"}, "needs a trained run"),
    ({"from_run": "runs/x"}, "only with source cf or both"),
])
def test_bad_semantic_id_config_is_a_one_line_error(kwargs, message):
    with pytest.raises(GenrecsysError, match=message):
        SemanticIDConfig(**kwargs)


# ----------------------------------------------------------------------------- item vectors
def test_semantic_texts_add_year_and_abstract_and_name_items_without_text():
    inter = pd.DataFrame({"user": ["u1"] * 3, "item": ["a", "b", "c"], "timestamp": [1, 2, 3], "rating": [5.0] * 3})
    items = pd.DataFrame({"item": ["a", "b", "c"], "title": ["Alpha", "Beta", None], "genres": ["Drama|War", "", ""],
                          "year": [1995.0, None, None], "abstract": ["Men at war.", "", None]})
    texts = semantic_texts(leave_one_out(Dataset("t", inter, items)))
    assert texts == ["", "Alpha. Genres: Drama, War. Year: 1995. Men at war.", "Beta", "item c"]


def test_cf_vectors_are_rows_1_to_i_of_the_item_embedding_table(split):
    import torch

    table = torch.arange((split.n_items + 2) * 3, dtype=torch.float32).view(-1, 3)  # + a mask row, as BERT4Rec
    model = SimpleNamespace(item_emb=SimpleNamespace(weight=table))
    assert np.array_equal(cf_vectors(model, split), table[1:split.n_items + 1].numpy())
    with pytest.raises(GenrecsysError, match="has no item embedding table"):
        cf_vectors(SimpleNamespace(), split)


def test_both_concatenates_unit_text_and_cf_rows(split, fake_text, monkeypatch):
    cf = np.full((split.n_items, 2), 3.0, np.float32)
    monkeypatch.setattr(sid_module, "run_vectors", lambda run, split, cache_dir=None: cf)
    x = item_vectors(split, SemanticIDConfig(source="both", from_run="run"))
    assert x.shape == (split.n_items, 10)
    assert np.allclose(np.linalg.norm(x[:, :8], axis=1), 1) and np.allclose(x[:, 8:], 2 ** -0.5)


# ----------------------------------------------------------------------------- build, disk, cache
def test_build_round_trips_through_its_directory(split, fake_text, tmp_path):
    cfg = SemanticIDConfig(quantize=QuantizeConfig(levels=2, codebook_size=4))
    sids = build_semantic_ids(split, cfg, cache_dir=tmp_path, out_dir=tmp_path / "sid")
    assert sids.codes.shape == (21, 3) and (sids.codes[0] == 0).all() and not sids.reused
    assert len({tuple(c) for c in sids.codes[1:].tolist()}) == 20
    back = load_semantic_ids(tmp_path / "sid", split)
    assert np.array_equal(back.codes, sids.codes) and back.sizes == sids.sizes
    assert np.array_equal(back.item_ids, split.item_ids) and back.dataset == "block-cycles"
    assert back.stats == json.loads(json.dumps(sids.stats)) and back.fingerprint == sids.fingerprint
    assert back.titles[back.index("i3")] == "Item 3 (group 0)"
    frame = pd.read_parquet(tmp_path / "sid" / "codes.parquet")
    assert {"item", "item_index", "c0", "c1", "c2"} <= set(frame.columns)
    meta = json.loads((tmp_path / "sid" / "stats.json").read_text())
    assert meta["config"]["quantize"]["levels"] == 2 and meta["sizes"] == list(sids.sizes)


def test_rebuild_with_the_same_inputs_reuses_the_directory_without_training(split, fake_text, tmp_path, monkeypatch):
    cfg = SemanticIDConfig(quantize=QuantizeConfig(levels=2, codebook_size=4))
    first = build_semantic_ids(split, cfg, cache_dir=tmp_path)  # default directory under the cache
    assert first.directory.parent == tmp_path / "semantic_ids" and first.fingerprint in first.directory.name
    stamp = (first.directory / "codes.parquet").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("quantized again")

    monkeypatch.setattr(sid_module, "quantize", no_training)
    again = build_semantic_ids(split, cfg, cache_dir=tmp_path)
    assert again.reused and again.directory == first.directory and np.array_equal(again.codes, first.codes)
    assert (first.directory / "codes.parquet").stat().st_mtime_ns == stamp
    with pytest.raises(AssertionError, match="quantized again"):  # another seed is another input
        build_semantic_ids(split, SemanticIDConfig(quantize=QuantizeConfig(levels=2, codebook_size=4, seed=1)),
                           cache_dir=tmp_path)


def test_build_never_replaces_a_directory_that_holds_something_else(split, fake_text, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(GenrecsysError, match="holds no semantic IDs"):
        build_semantic_ids(split, cache_dir=tmp_path, out_dir=tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_loading_for_another_dataset_or_catalog_fails_with_one_line(split, fake_text, tmp_path):
    build_semantic_ids(split, SemanticIDConfig(quantize=QuantizeConfig(levels=1, codebook_size=4)),
                       cache_dir=tmp_path, out_dir=tmp_path / "sid")
    other = leave_one_out(block_cycles(items_per_group=12))
    with pytest.raises(GenrecsysError) as exc:
        load_semantic_ids(tmp_path / "sid", other)  # same dataset name, 24 items
    assert "another 'block-cycles' catalog" in str(exc.value) and str(tmp_path / "sid") in str(exc.value)
    renamed = leave_one_out(Dataset("ml-100k", split.dataset.interactions, split.dataset.items))
    with pytest.raises(GenrecsysError, match="of dataset 'block-cycles', not of 'ml-100k'") as exc:
        load_semantic_ids(tmp_path / "sid", renamed)
    assert "\n" not in str(exc.value)


def test_missing_or_empty_directories_fail_with_one_line_naming_them(tmp_path):
    with pytest.raises(GenrecsysError, match=f"{tmp_path / 'nope'}: no such semantic IDs directory"):
        load_semantic_ids(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenrecsysError, match="not a semantic IDs directory .no codes.parquet or stats.json."):
        load_semantic_ids(tmp_path / "empty")


def test_the_generative_modules_import_without_torch():
    code = ("import sys; import genrecsys.generative.semantic_ids, genrecsys.generative.quantize, "
            "genrecsys.cli.semantic_ids; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ----------------------------------------------------------------------------- CLI
def test_cli_build_prints_diagnostics_and_the_directory_last_then_reuses_and_shows(block_dataset_dir, minilm,
                                                                                   tmp_path, capsys):
    out_dir = tmp_path / "sid"
    args = ["--cache-dir", str(tmp_path / "cache"), "semantic-ids", "build", "--dataset", str(block_dataset_dir),
            "--levels", "2", "--codebook-size", "4", "--output-dir", str(out_dir)]
    code, out, _ = _run(args, capsys)
    assert code == 0 and out.strip().splitlines()[-1] == str(out_dir)
    assert "collisions before dedup" in out and "rkmeans on text vectors (20 items, 384-d)" in out
    code, out, _ = _run(args, capsys)
    assert code == 0 and "reused" in out and out.strip().splitlines()[-1] == str(out_dir)
    code, out, _ = _run(["semantic-ids", "show", str(out_dir), "--item", "i3", "i12"], capsys)
    assert code == 0 and "perplexity" in out
    assert any(line.startswith("item i3  code ") and line.endswith("Item 3 (group 0)") for line in out.splitlines())
    code, _, err = _run(["semantic-ids", "show", str(out_dir), "--item", "zzz"], capsys)
    assert code == 2 and "no item 'zzz'" in err and len(err.strip().splitlines()) == 1


def test_cli_cf_vectors_come_from_a_run_on_the_same_dataset(block_dataset_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(["train", "--model", "bpr", "--dataset", str(block_dataset_dir), "--epochs", "1", "--no-progress",
                 "--output-dir", str(run)], capsys)[0] == 0
    base = ["--cache-dir", str(tmp_path / "cache"), "semantic-ids", "build", "--source", "cf", "--from-run", str(run),
            "--quantizer", "rqvae", "--epochs", "20", "--levels", "2", "--codebook-size", "4"]
    code, out, _ = _run(base + ["--dataset", str(block_dataset_dir), "--output-dir", str(tmp_path / "sid")], capsys)
    assert code == 0 and "rqvae on cf vectors (20 items, 64-d)" in out
    other = block_cycles(items_per_group=12).save(tmp_path / "other")
    code, _, err = _run(base + ["--dataset", str(other)], capsys)
    assert code == 2 and "the run was trained on 'block-cycles' (20 items)" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_show_of_a_directory_without_codes_is_a_one_line_error(tmp_path, capsys):
    code, _, err = _run(["semantic-ids", "show", str(tmp_path)], capsys)
    assert code == 2 and str(tmp_path) in err and "not a semantic IDs directory" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("cmd", [["semantic-ids"], ["semantic-ids", "build"], ["semantic-ids", "show"]])
def test_semantic_ids_commands_have_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


@pytest.mark.integration
def test_ml100k_text_semantic_ids_are_unique_and_diagnosed(ml100k_cache_dir, minilm, tmp_path, capsys):
    code, out, _ = _run(["--cache-dir", str(ml100k_cache_dir), "semantic-ids", "build", "--dataset", "ml-100k",
                         "--output-dir", str(tmp_path / "sid")], capsys)
    assert code == 0 and "rkmeans on text vectors (1682 items, 384-d), 3 levels x 32 codes" in out
    assert "collisions before dedup" in out and "reconstruction error" in out
    sids = load_semantic_ids(tmp_path / "sid")
    assert sids.codes.shape[0] == 1683 and len({tuple(c) for c in sids.codes[1:].tolist()}) == 1682
    assert sids.titles[sids.index("1")] == "Toy Story"
