"""The families table's llmrank part (genrecsys.stages.families): per-seed retriever runs
named by "{seed}", the LLM figures kept in each run, and the paired test against the
retriever on the users the LLM ranked."""
from __future__ import annotations

import json

import pytest

from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
from genrecsys.experiment import run_experiment
from genrecsys.stages import families as f
from genrecsys.stages import generative as g


def test_a_seed_placeholder_names_each_seeds_own_run(monkeypatch):
    seen = []
    monkeypatch.setattr("genrecsys.experiment.run_experiment", lambda cfg, out, **kw: seen.append((cfg, out)) or {})
    row = g.Row("x", "llmrank", {"retriever": "/runs/sasrec/seed-{seed}", "candidates": 5})
    g.train_rows([row], __import__("pathlib").Path("/tmp/unused"), 2, TrainConfig(seed=7))
    assert [c.model_params["retriever"] for c, _ in seen] == ["/runs/sasrec/seed-7", "/runs/sasrec/seed-8"]
    assert all(c.model_params["candidates"] == 5 for c, _ in seen)


def test_default_rows_add_llmrank_over_each_retriever_only_with_a_runs_dir(tmp_path):
    assert not [r for r in f.default_rows() if r.model == "llmrank"]
    rows = [r for r in f.default_rows(tmp_path, 50) if r.model == "llmrank"]
    assert {(r.params["readout"], r.params["retriever"]) for r in rows} == {
        (o, str(tmp_path / m / "seed-{seed}")) for o in ("letters", "pmi") for m in ("sasrec", "bpr")}
    assert all(r.params["users"] == 50 for r in rows)


def test_llmrank_table_pairs_with_the_retriever_on_the_ranked_users(block_dataset_dir, tmp_path, server):
    data = DataConfig(dataset=str(block_dataset_dir), max_seq_len=8)
    llm = {"backend": "openai", "base_url": server.url, "cache": str(tmp_path / "cache.sqlite")}
    row = g.Row("LLMRank over Pop", "llmrank", {"retriever": str(tmp_path / "pop" / "seed-{seed}"), "users": 12,
                                                "candidates": 6, "llm": llm})
    for seed in (0, 1):
        train = TrainConfig(progress=False, seed=seed)
        run_experiment(ExperimentConfig(model="pop", data=data, train=train), tmp_path / "pop" / f"seed-{seed}")
        params = {**row.params, "retriever": row.params["retriever"].replace("{seed}", str(seed))}
        run_experiment(ExperimentConfig(model="llmrank", model_params=params, data=data, train=train),
                       tmp_path / row.slug / f"seed-{seed}")
    (e,) = f.llmrank_table(tmp_path, [g.Row("Pop", "pop"), row])
    assert e["seeds"] == 2 and e["users"] == 12 and e["failed"] == 0 and e["violations"] == 0
    # the test server always prefers letter A: the check must see a ranker that is all position
    assert e["first_position_share"] == 1.0 and e["uniform_share"] == pytest.approx(1 / 6)
    assert e["retriever_metric"] >= 0 and e["diff"] == pytest.approx(e["llmrank_metric"] - e["retriever_metric"])
    stats = json.loads((tmp_path / row.slug / "seed-0" / "llmrank.json").read_text())
    assert len(stats["ranked_users"]) == 12 and stats["prompts"] == 3 * 12
    n = len(server.bodies)
    assert f.llmrank_table(tmp_path, [row])[0]["diff"] == e["diff"] and len(server.bodies) == n  # kept, not re-asked
    assert "LLMRank over Pop" in f.llmrank_markdown([e])
