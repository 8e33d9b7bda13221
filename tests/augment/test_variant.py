"""The variant directory: manifest contents and cost, loadability, safety of the writer."""
from __future__ import annotations

import subprocess
import sys

import pytest

from augmentdata import llm, make_llm, news_dir, scripted, tree_digest  # noqa: F401  (fixtures)
from genrecsys.augment import augment, load_variant
from genrecsys.data.load import load_dataset
from genrecsys.errors import GenrecsysError

MANIFEST_KEYS = {"format", "format_version", "name", "task", "round", "parent", "source_dataset", "rounds", "created",
                 "llm", "templates", "requests", "cache_hits", "backend_calls", "prompt_tokens", "completion_tokens",
                 "wall_s", "cost", "cost_total", "quality", "steps", "parse_failures", "rows", "limit"}


def test_manifest_records_llm_templates_accounting_and_cost(news_dir, llm, tmp_path, scripted):
    m = load_variant(augment("profile", str(news_dir), tmp_path / "up", llm)).manifest
    assert MANIFEST_KEYS <= set(m)
    assert m["task"] == "profile" and m["round"] == 1 and m["name"] == "tiny-news+profile"
    assert m["parent"] == {"path": str(news_dir), "name": "tiny-news", "round": 0, "task": None}
    assert m["llm"]["backend"] == "openai" and m["llm"]["model"] == "gpt-4o-mini"
    assert m["llm"]["price_per_1m_tokens"] == {"prompt": 0.15, "completion": 0.6}
    assert m["templates"] == {"profile_user": "2"}
    assert m["requests"] == 4 and m["backend_calls"] == 5 == len(scripted.bodies)  # 4 users + carol's re-ask
    # the server counts whitespace words as tokens: recompute the bill from what it received
    sent = sum(len(x["content"].split()) for b in scripted.bodies for x in b["messages"])
    assert m["prompt_tokens"] == sent > 0 and m["completion_tokens"] > 0
    expected = (m["prompt_tokens"] * 0.15 + m["completion_tokens"] * 0.6) / 1e6
    assert m["cost"] == pytest.approx(expected) and m["cost_total"] == pytest.approx(expected)
    assert m["wall_s"] > 0


def test_a_local_model_costs_nothing(news_dir, scripted, tmp_path):
    client = make_llm(scripted.url, tmp_path, model="my-local-model")
    try:
        m = load_variant(augment("summarize", str(news_dir), tmp_path / "ns", client)).manifest
    finally:
        client.close()
    assert m["cost_total"] == 0 and m["prompt_tokens"] > 0


def test_the_writer_refuses_to_replace_the_input_or_a_foreign_directory(news_dir, llm, tmp_path):
    before = tree_digest(news_dir)
    with pytest.raises(GenrecsysError, match="replace the input"):
        augment("summarize", str(news_dir), news_dir, llm)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(GenrecsysError, match="not an augmented variant"):
        augment("summarize", str(news_dir), foreign, llm)
    assert (foreign / "notes.txt").read_text() == "keep me" and tree_digest(news_dir) == before


def test_a_variant_can_be_rewritten_in_place_of_an_older_one(news_dir, llm, tmp_path):
    augment("summarize", str(news_dir), tmp_path / "v", llm)
    augment("profile", str(news_dir), tmp_path / "v", llm)
    assert load_variant(tmp_path / "v").manifest["task"] == "profile"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".v.")]  # no temp directories left behind


def test_mind_variant_keeps_impressions_and_loads_for_training(tmp_path, llm):
    from newsfixtures import MIND

    from genrecsys.data.load import make_split

    out = augment("summarize", str(MIND), tmp_path / "mind-ns", llm)
    ds = load_dataset(str(out))
    orig = load_dataset(str(MIND))
    assert ds.impressions.equals(orig.impressions) and ds.interactions.equals(orig.interactions)
    assert make_split(ds, "impressions").n_items == make_split(orig, "impressions").n_items


def test_genrecsys_train_accepts_a_variant_directory(news_dir, llm, tmp_path, capsys):
    from genrecsys.cli.main import main

    out = augment("generate", str(news_dir), tmp_path / "ng", llm)
    code = main(["train", "--model", "pop", "--dataset", str(out), "--epochs", "1", "--no-progress",
                 "--output-dir", str(tmp_path / "run")])
    assert code == 0 and str(tmp_path / "run") in capsys.readouterr().out


def test_importing_augment_does_not_import_torch():
    code = "import sys, genrecsys.augment, genrecsys.augment.run; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
