"""Report helpers: seed aggregation by hand, and the cross-model comparison table + chart."""
from __future__ import annotations

import math

import pytest

from genrecsys.eval.report import (aggregate_seeds, fmt_mean_std, longtail_section, markdown_table,
                                   write_comparison_table)


def run(seed: int, ndcg: float, hit: float, secs: float) -> dict:
    return {"model": "sasrec", "dataset": "toy", "protocol": {"split": "loo"}, "seed": seed,
            "test": {"ndcg@10": ndcg, "hit@10": hit}, "valid": {"ndcg@10": ndcg / 2, "hit@10": hit / 2},
            "train_seconds": secs}


def test_aggregate_seeds_mean_and_sample_std_by_hand():
    agg = aggregate_seeds([run(0, 0.1, 0.5, 10.0), run(1, 0.2, 0.5, 20.0), run(2, 0.6, 0.8, 30.0)])
    # ndcg: mean 0.3; deviations -.2, -.1, .3 -> squares .04 + .01 + .09 = .14, / (3 - 1) = .07
    assert agg["test"]["ndcg@10"] == pytest.approx(0.3)
    assert agg["test_std"]["ndcg@10"] == pytest.approx(math.sqrt(0.07))
    # hit: mean 0.6; deviations -.1, -.1, .2 -> .06 / 2 = .03
    assert agg["test"]["hit@10"] == pytest.approx(0.6)
    assert agg["test_std"]["hit@10"] == pytest.approx(math.sqrt(0.03))
    assert agg["valid"]["ndcg@10"] == pytest.approx(0.15)
    assert agg["valid_std"]["ndcg@10"] == pytest.approx(math.sqrt(0.07) / 2)
    assert agg["train_seconds"] == 20.0 and agg["train_seconds_std"] == pytest.approx(10.0)
    assert agg["seeds"] == [0, 1, 2] and len(agg["runs"]) == 3


def test_aggregate_of_one_seed_has_zero_std():
    agg = aggregate_seeds([run(7, 0.25, 0.5, 3.0)])
    assert agg["test"]["ndcg@10"] == 0.25 and agg["test_std"]["ndcg@10"] == 0.0


def test_markdown_helpers():
    assert fmt_mean_std(0.123456, 0.01) == "0.1235 ± 0.0100"
    assert fmt_mean_std(0.5) == "0.5000"
    assert markdown_table(["a", "b"], [[1, 2]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n"


def test_write_comparison_table_writes_rows_and_a_png(tmp_path):
    sasrec = aggregate_seeds([run(0, 0.1, 0.5, 1.0), run(1, 0.3, 0.7, 1.0)])
    pop = {"model": "pop", "dataset": "toy", "seed": 0, "test": {"ndcg@10": 0.05, "hit@10": 0.2}}  # one run, no std
    path = write_comparison_table([sasrec, pop, {**pop, "label": "pop-no-hit", "test": {"ndcg@10": 0.04}}],
                                  tmp_path / "out" / "compare.md", ("ndcg@10", "hit@10"), "Toy benchmark")
    png = tmp_path / "out" / "compare.png"
    assert path == tmp_path / "out" / "compare.md"
    assert png.is_file() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = path.read_text()
    assert text.startswith("# Toy benchmark\n")
    assert "![Toy benchmark](compare.png)" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0] == "| model | seeds | ndcg@10 | hit@10 |"
    s = math.sqrt(0.02)  # std of (0.1, 0.3) and of (0.5, 0.7)
    assert table[2] == f"| sasrec | 2 | 0.2000 ± {s:.4f} | 0.6000 ± {s:.4f} |"
    assert table[3] == "| pop | 1 | 0.0500 | 0.2000 |"
    assert table[4] == "| pop-no-hit | 1 | 0.0400 | — |"
    assert len(table) == 5


def test_rows_from_different_datasets_are_labelled_with_the_dataset(tmp_path):
    a = {"model": "pop", "dataset": "ml-100k", "test": {"ndcg@10": 0.1}}
    b = {"model": "pop", "dataset": "ml-1m", "test": {"ndcg@10": 0.2}}
    text = write_comparison_table([a, b], tmp_path / "c.md", ["ndcg@10"], "Datasets").read_text()
    assert "| pop (ml-100k) | 1 | 0.1000 |" in text and "| pop (ml-1m) | 1 | 0.2000 |" in text


def test_a_png_path_gets_the_chart_and_the_table_beside_it(tmp_path):
    row = {"model": "pop", "dataset": "toy", "test": {"ndcg@10": 0.1}}
    md = write_comparison_table([row], tmp_path / "ndcg.png", ["ndcg@10"], "NDCG")
    assert md == tmp_path / "ndcg.md" and "![NDCG](ndcg.png)" in md.read_text()
    assert (tmp_path / "ndcg.png").read_bytes()[:4] == b"\x89PNG"


def with_tail(r: dict, users: float, ndcg: float | None = None) -> dict:
    """`r` with a long-tail slice of `users` users (its ndcg left out when the slice is empty)."""
    tail = {"longtail_users": users} | ({"longtail_ndcg@10": ndcg} if ndcg is not None else {})
    return {**r, "test": {**r["test"], **tail}}


def test_aggregate_skips_seeds_whose_longtail_slice_is_empty():
    agg = aggregate_seeds([with_tail(run(0, 0.1, 0.5, 1.0), 4, 0.2), with_tail(run(1, 0.2, 0.5, 1.0), 0),
                           with_tail(run(2, 0.3, 0.5, 1.0), 2, 0.4)])
    assert agg["test"]["longtail_ndcg@10"] == pytest.approx(0.3)  # (0.2 + 0.4) / 2: seed 1 has no value
    assert agg["test_std"]["longtail_ndcg@10"] == pytest.approx(math.sqrt(0.02))
    assert agg["test"]["longtail_users"] == 2.0  # the size is defined (0) in every seed
    assert agg["test"]["ndcg@10"] == pytest.approx(0.2)


def test_a_metric_no_seed_defines_is_nan_and_shown_as_a_dash(tmp_path):
    agg = aggregate_seeds([{**run(0, 0.1, 0.5, 1.0), "test": {"ndcg@10": 0.1, "new_auc": math.nan}},
                           {**run(1, 0.3, 0.5, 1.0), "test": {"ndcg@10": 0.3, "new_auc": math.nan}}])
    assert math.isnan(agg["test"]["new_auc"]) and math.isnan(agg["test_std"]["new_auc"])
    text = write_comparison_table([agg], tmp_path / "c.md", ["ndcg@10", "new_auc"], "T").read_text()
    assert "| sasrec | 2 | 0.2000 ± 0.1414 | — |" in text


def test_longtail_section_lists_both_stages_and_dashes_an_empty_slice():
    metrics = {"protocol": {"ranking": "full", "longtail_max_train": 5},
               "valid": {"ndcg@10": 0.3, "longtail_users": 0.0},
               "test": {"ndcg@10": 0.2, "longtail_users": 12.0, "longtail_hit@10": 0.25, "longtail_ndcg@10": 0.125}}
    text = longtail_section(metrics)
    assert "at most 5 training interactions" in text
    assert "| stage | users | hit@10 | ndcg@10 |" in text
    assert "| valid | 0 | — | — |" in text and "| test | 12 | 0.2500 | 0.1250 |" in text
    assert longtail_section({"protocol": {}, "valid": {}, "test": {"ndcg@10": 0.2}}) == ""
