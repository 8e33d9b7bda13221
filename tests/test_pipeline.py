from __future__ import annotations

import json

import pytest

from genrecsys.config import LLMConfig
from genrecsys.errors import GenrecsysError
from genrecsys.pipeline import MainJobConfig, run_main_job


@pytest.mark.integration
def test_quick_main_job_on_real_ml100k_writes_report_tables_and_plots(ml100k_cache_dir, tmp_path):
    cfg = MainJobConfig(quick=True, models=("pop", "bpr"), threads=1, progress=False, quick_epochs=3,
                        reland=False, genre=False)
    report = run_main_job(cfg, tmp_path / "main", cache_dir=ml100k_cache_dir)
    text = report.read_text()
    assert "| ml-100k | 943 | 1,682 | 100,000 |" in text
    assert "| pop |" in text and "| bpr |" in text
    assert "Wilcoxon" in text
    best = "bpr" if "(bpr), per-user" in text else "pop"
    assert f"genrecsys serve {tmp_path / 'main' / 'runs' / best}" in text  # how to serve the best run
    assert "## RELAND" not in text and "## GENRE" not in text
    assert "## Beyond accuracy" in text and "| pop | " in text.split("## Beyond accuracy")[1]
    for png in ("ndcg.png", "curves.png", "beyond.png", "groups.png"):
        assert (tmp_path / "main" / png).stat().st_size > 1000


def movie_reply(prompt: str) -> str | None:
    """Well-formed answers to the four stage templates (RELAND CoT, GENRE summarize /
    profile / generate), so every step has something to parse."""
    if "Step 1: one sentence" in prompt:
        return ("Step 1: This user enjoys character-driven dramas and classic comedies.\n"
                "Step 2:\nCategories: Drama, Comedy\nItems:\n1. Fargo (1996)\n2. Casablanca (1942)")
    if "Write one better title" in prompt:
        return "[A sharper movie title]"
    if "Allowed topics" in prompt:
        return "[topics] drama, comedy"
    if "Invent one new item" in prompt:
        return json.dumps({"title": "Rainy Harbour", "abstract": "A quiet drama by the sea.", "category": "Drama"})
    return None


@pytest.fixture
def movie_server():
    from augment.augmentdata import ScriptedServer

    s = ScriptedServer(movie_reply)
    yield s
    s.close()


@pytest.mark.integration
def test_main_job_stages_run_reland_and_genre_through_a_real_llm_server(ml100k_cache_dir, minilm, movie_server,
                                                                        tmp_path):
    llm = LLMConfig(backend="openai", base_url=movie_server.url, model="gpt-4o-mini", timeout_s=10, max_attempts=2,
                    cache=str(tmp_path / "llm.sqlite"))
    cfg = MainJobConfig(quick=True, models=("pop", "lightgcn"), threads=1, progress=False, quick_epochs=1,
                        reland_seed_fraction=6, genre_models=("dcn",),
                        genre_variants=("NS", "UP", "NG"), genre_limit=3, genre_epochs=1, llm=llm)
    out = tmp_path / "main"
    text = run_main_job(cfg, out, cache_dir=ml100k_cache_dir).read_text()
    assert "The stage failed" not in text

    # RELAND: ID-only vs +RELAND with a paired p-value, the LLM cost line and explanations
    reland = json.loads((out / "reland" / "reland.json").read_text())
    assert reland["llm"]["seed_users"] == 6 and reland["llm"]["calls"] == 6 and reland["llm"]["unparsed"] == 0
    assert "| sasrec | ID-only |" in text and "| sasrec | +RELAND |" in text and "p=" in text
    # gated fusion is warm-started, so it is tested against ID-only continued for the same epochs
    assert "| sasrec | ID-only, continued (control) |" in text and "what the text adds" in text
    sasrec = reland["models"]["sasrec"]
    assert sasrec["id_only_continued"]["epochs"] == sasrec["reland"]["epochs"]
    assert "6 calls for 6 seed users of 943" in text
    assert "the user vectors of the LightGCN run `lightgcn` (backbone stage)" in text  # no second encoder
    assert len(reland["examples"]) == 3 and all(len(e["top3"]) == 3 for e in reland["examples"])
    assert "character-driven dramas" in text and "did not parse" not in text

    # GENRE: variants built by augment(), trained against ORI, with quality and cost from the manifests
    genre = json.loads((out / "genre" / "genre.json").read_text())
    assert set(genre["runs"]) == set(genre["tests"]) | {"ORI"} == {"ORI", "NS", "UP", "NG", "UP∅"}
    # UP's control: the same model (interest fusion) on ORI's data with no profile, no LLM rows
    assert genre["variants"]["UP∅"]["control_of"] == "UP" and "rows" not in genre["variants"]["UP∅"]
    assert set(genre["control_tests"]["UP"]["dcn"]) >= {"auc", "ndcg@10"}
    assert "|  | UP∅ |" in text and "UP − UP∅, what the profiles themselves add" in text
    assert genre["variants"]["UP"]["rows"] == 3
    assert genre["variants"]["NS"]["rows"] == 3 and genre["variants"]["NS"]["parse_failures"] == 0
    assert genre["variants"]["NG"]["completion_tokens"] > 0 and genre["variants"]["NG"]["cost_total"] > 0
    assert "| dcn | ORI |" in text and "|  | NG |" in text and "AUC" in text
    assert "parse_failure_rate" in text
    assert len(movie_server.answered) > 0
    for png in ("reland.png", "genre.png"):
        assert (out / png).stat().st_size > 1000
        assert f"]({png})" in text

    # a rerun is answered from the LLM cache: nothing new reaches the server
    answered = sum(movie_server.answered.values())
    run_main_job(cfg, out, cache_dir=ml100k_cache_dir)
    assert sum(movie_server.answered.values()) == answered


def test_main_cli_maps_stage_and_llm_flags_onto_the_job_config(monkeypatch, tmp_path, capsys):
    import genrecsys.pipeline as pipeline
    from genrecsys.cli.main import main

    seen = {}

    def fake_job(cfg, output_dir, cache_dir=None):
        seen["cfg"] = cfg
        return output_dir / "report.md"

    monkeypatch.setattr(pipeline, "run_main_job", fake_job)
    code = main(["main", "--quick", "--skip-genre", "--reland-seed-fraction", "0.05", "--reland-max-tokens", "32",
                 "--genre-limit", "4", "--llm-backend", "openai", "--llm-base-url", "http://127.0.0.1:9/v1",
                 "--llm-model", "m", "--threads", "2", "--output-dir", str(tmp_path)])
    cfg = seen["cfg"]
    assert code == 0 and cfg.reland and not cfg.genre and cfg.genre_limit == 4
    reland = cfg.reland_config()
    assert reland.seed_fraction == 0.05 and reland.max_tokens == 32 and reland.item_features
    assert (reland.llm.backend, reland.llm.base_url, reland.llm.model, reland.llm.threads) == (
        "openai", "http://127.0.0.1:9/v1", "m", 2)


def test_stage_defaults_are_the_embedded_llm_with_small_quick_and_paper_full_budgets():
    quick, full = MainJobConfig(quick=True), MainJobConfig()
    assert quick.reland and quick.genre and quick.llm.backend == "local" and quick.llm.model is None
    assert (quick.reland_config().seed_fraction, full.reland_config().seed_fraction) == (0.02, 0.1)
    assert full.reland_config().clusters == 0.05 and full.reland_config().max_tokens == 256
    with pytest.raises(GenrecsysError, match="unknown"):
        MainJobConfig(genre_variants=("XX",))


def test_reland_reuses_the_backbone_lightgcn_only_when_no_clock_cap_cut_it(tmp_path):
    from genrecsys.pipeline import backbone_encoder

    run = tmp_path / "lightgcn"
    assert backbone_encoder(run) is None  # not trained
    (run / "seed-2020").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"stopped_by": "early_stopping"}))
    (run / "seed-2020" / "metrics.json").write_text(json.dumps({"stopped_by": "epochs"}))
    assert backbone_encoder(run) == run
    # a capped seed: its vectors depend on machine load, so the seed users (and LLM prompts) would too
    (run / "seed-2020" / "metrics.json").write_text(json.dumps({"stopped_by": "max_seconds"}))
    assert backbone_encoder(run) is None
