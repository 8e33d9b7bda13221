"""The generative-retrieval table's logic (genrecsys.stages.generative) on hand-made runs."""
from __future__ import annotations

import json

import pytest

from genrecsys.errors import GenrecsysError
from genrecsys.stages import generative as g


def _metrics(seed: int, ndcg: float) -> dict:
    test = {m: ndcg for m in g.METRICS}
    return {"model": "x", "dataset": "d", "protocol": "p", "seed": seed, "test": test, "valid": test,
            "seconds_per_epoch": 2.0, "train_seconds": 10.0 * seed, "epochs": 3}


def test_decode_stats_are_kept_in_the_run_and_reused_only_for_the_same_search(tmp_path):
    run = tmp_path / "seed-2020"
    run.mkdir()
    stats = {"decode_ms_per_user": 0.4, "invalid_rate_constrained": 0.0, "invalid_rate_unconstrained": 0.01,
             "decode_device": "cuda"}
    (run / "decode.json").write_text(json.dumps({"beam": 20, "users": None, "stats": stats}))
    # no model in the directory: a reuse must not load one, on any device
    assert g.decode_stats(run, device="cpu") == stats
    with pytest.raises(GenrecsysError, match="not a run directory"):
        g.decode_stats(run, beam=10)  # another beam is another measurement
    with pytest.raises(GenrecsysError, match="not a run directory"):
        g.decode_stats(run, users=16)


def test_summary_means_over_seeds_and_markdown_names_the_decode_device():
    rows = [g.Row("SASRec", "sasrec"), g.Row("TIGER (residual k-means)", "tiger", {"codes": "c"}, "rkmeans")]
    runs = {"SASRec": [_metrics(1, 0.10), _metrics(2, 0.12)], rows[1].label: [_metrics(1, 0.08), _metrics(2, 0.06)]}
    tests = {rows[1].label: {"diff": -0.04, "t_p": 0.001, "wilcoxon_p": 0.02}}
    decode = {rows[1].label: {"decode_ms_per_user": 0.45, "invalid_rate_unconstrained": 0.0, "decode_device": "cuda"}}
    codes = {"rkmeans": {"stats": {"collision_rate": 0.52}}}
    table = g.summarize(rows, runs, tests, decode, codes)
    assert table[0]["test"]["ndcg@10"] == pytest.approx(0.11) and table[0]["seeds"] == [1, 2]
    assert table[1]["test_std"]["ndcg@10"] == pytest.approx(0.0141421, rel=1e-4)
    assert table[1]["collision_rate"] == 0.52 and "collision_rate" not in table[0]
    md = g.markdown(table).splitlines()
    sasrec, tiger = md[2].split(" | "), md[3].split(" | ")
    assert sasrec[5] == "0.1100 ± 0.0141" and sasrec[-1].rstrip(" |") == "–"
    assert "0.5 (cuda)" in tiger and "0.520" in tiger and "-0.0400" in tiger and tiger[-1].rstrip(" |") == "0.001 / 0.02"
