"""The cost-curve stage: one cell measured in a fresh process on a small synthetic set, the
growth exponents, and the RELAND cost arithmetic."""
import math

import pytest

from genrecsys.stages.scale import (PerCall, ScaleSettings, dataset_dir, growth_exponent, measure_in_child,
                                    reland_cost_rows, scale_table)


def test_a_cell_is_measured_in_a_fresh_process_and_the_data_is_reused(tmp_path):
    data, gen_s = dataset_dir(tmp_path, 5_000)
    assert gen_s is not None and dataset_dir(tmp_path, 5_000) == (data, None)  # written once
    settings = ScaleSettings(max_steps=2, eval_users=10, threads=1)
    row = measure_in_child(data, "bpr", settings)
    assert row["interactions"] == 5_000 and row["users"] == 50 and row["steps_timed"] == 2
    assert row["batches_per_epoch"] >= 2 and row["epoch_s"] > 0 and row["eval_users_timed"] == 10
    assert row["peak_rss_mb"] >= row["data_rss_mb"] >= row["baseline_rss_mb"] > 0
    assert row["measured"] == ("full epoch" if row["batches_per_epoch"] == 2 else "2 steps")


def test_growth_exponent_and_the_table_name_what_grows_worse_than_linear():
    assert growth_exponent([1e6, 1e7], [2.0, 20.0]) == pytest.approx(1.0)
    assert growth_exponent([1e6, 1e7, 1e8], [1.0, 100.0, 10_000.0]) == pytest.approx(2.0)
    assert growth_exponent([1e6], [1.0]) is None
    base = {"users": 1, "items": 1, "load_s": 1.0, "split_s": 1.0, "build_s": 1.0, "eval_s": 1.0, "measured": "x",
            "baseline_rss_mb": 100.0}
    rows = [dict(base, model="m", interactions=n, epoch_s=n / 1e6, peak_rss_mb=100.0 + (n / 1e6) ** 2)
            for n in (1e6, 1e7)]
    text, summary = scale_table(rows)
    assert summary["exponents"]["m"]["epoch_s"] == pytest.approx(1.0)
    assert summary["exponents"]["m"]["peak_rss_mb"] == pytest.approx(2.0)  # above the interpreter's baseline
    assert summary["worse_than_linear"] == ["m peak RSS MB (2.00)"] and "Worse than linear: m peak RSS MB" in text


def test_reland_cost_rows_follow_from_the_per_call_figures():
    per_call = PerCall.from_reland_llm({"calls": 10, "prompt_tokens": 8000, "completion_tokens": 2000,
                                        "constrained_tokens_per_s": 20.0})
    rows = {(r["users"], r["strategy"]): r for r in reland_cost_rows([1_000_000], per_call, seed_cap=10_000)}
    assert rows[(1_000_000, "RELAND, 10% seeds")]["calls"] == 100_000
    assert rows[(1_000_000, "RELAND, 10,000 seeds")]["calls"] == 10_000
    per_user = rows[(1_000_000, "per user")]
    assert per_user["tokens"] == 1_000_000 * 1000 and math.isclose(per_user["hours"], 1_000_000 * 200 / 20 / 3600)
    assert rows[(1_000_000, "per interaction")]["calls"] == 100_000_000


def test_a_killed_cell_is_a_row_with_an_error_and_the_table_says_so(tmp_path, monkeypatch):
    import genrecsys.stages.scale as scale

    data, _ = dataset_dir(tmp_path, 5_000)
    monkeypatch.setattr(scale, "measure", _die)  # the child runs the module attribute: a process that dies
    row = measure_in_child(data, "bpr", ScaleSettings())
    assert row["model"] == "bpr" and "killed" in row["error"]
    text, _ = scale_table([dict(row, interactions=5_000)])
    assert "killed" in text


def _die(*_args):
    import os

    os._exit(9)  # what the out-of-memory killer leaves: no exception, no result
