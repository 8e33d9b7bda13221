"""compare_runs on tiny per_user.parquet files written by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrecsys.errors import GenrecsysError
from genrecsys.eval.compare import compare_runs, format_comparison, seeds_of
from genrecsys.eval.significance import paired_tests

METRICS = ("ndcg@10", "hit@10", "mrr@10")


def as_row(tests: dict) -> tuple:
    """paired_tests output in MetricComparison field order (after the metric name)."""
    return tuple(tests[k] for k in ("mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "t_pvalue",
                                    "wilcoxon_pvalue", "n_nonzero"))


def fields(row) -> tuple:
    return (row.mean_a, row.mean_b, row.diff, row.ci_low, row.ci_high, row.t_pvalue, row.wilcoxon_pvalue,
            row.n_nonzero)


def write_run(d: Path, users, ndcg, hit=None, mrr=None, stage="test") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    n = len(users)
    frame = pd.DataFrame({"stage": [stage] * n, "user": users, "ndcg@10": ndcg,
                          "hit@10": hit if hit is not None else [float(v > 0) for v in ndcg],
                          "mrr@10": mrr if mrr is not None else ndcg})
    other = frame.assign(stage="valid" if stage == "test" else "test", **{m: 0.0 for m in METRICS})
    pd.concat([frame, other]).to_parquet(d / "per_user.parquet", index=False)
    return d


def test_single_runs_are_paired_by_user_not_by_row(tmp_path):
    a = write_run(tmp_path / "a", ["u1", "u2", "u3"], [0.0, 0.5, 1.0])
    b = write_run(tmp_path / "b", ["u3", "u1", "u2"], [1.0, 0.5, 0.5])  # other row order
    res = compare_runs(a, b)
    # aligned: u1 0 -> .5, u2 .5 -> .5, u3 1 -> 1
    row = res["ndcg@10"]
    assert res.n_users == 3 and res.stage == "test"
    assert (row.mean_a, row.mean_b, row.diff) == pytest.approx((0.5, 2 / 3, 1 / 6))
    assert fields(row) == pytest.approx(as_row(paired_tests(np.array([0.0, 0.5, 1.0]), np.array([0.5, 0.5, 1.0]))))
    assert [r.metric for r in res.rows] == list(METRICS)


def test_multi_seed_runs_average_each_user_over_seeds_before_pairing(tmp_path):
    a = write_run(tmp_path / "a", ["u1", "u2", "u3", "u4"], [0.1, 0.2, 0.3, 0.4])
    b = tmp_path / "b"
    write_run(b / "seed-0", ["u1", "u2", "u3", "u5"], [0.2, 0.0, 1.0, 0.9])
    write_run(b / "seed-1", ["u1", "u2", "u3", "u5"], [0.4, 0.2, 0.0, 0.9])
    write_run(b / "seed-10", ["u1", "u2", "u3", "u5"], [0.6, 0.1, 0.5, 0.9])
    (b / "metrics.json").write_text("{}")  # the aggregate sits beside the seeds
    res = compare_runs(a, b, metrics=("ndcg@10",))
    # B per user: u1 .4, u2 .1, u3 .5 (u5 has no partner); A: u1 .1, u2 .2, u3 .3 (u4 has none)
    assert (res.n_seeds_a, res.n_seeds_b, res.n_users, res.only_a, res.only_b) == (1, 3, 3, 1, 1)
    expected = paired_tests(np.array([0.1, 0.2, 0.3]), np.array([0.4, 0.1, 0.5]))
    assert fields(res["ndcg@10"]) == pytest.approx(as_row(expected))


def test_multi_seed_runs_are_paired_on_the_seeds_both_have(tmp_path):
    """A row with seed 2020 only beside a reference with 2020-2022 (a curve still running):
    the reference's other seeds would put seed-to-seed variance into the difference (the
    TALLRec re-ranking table once reported SASRec's 3-seed mean against one seed)."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a / "seed-2020", ["u1", "u2", "u3"], [0.5, 0.6, 0.7])
    write_run(a / "seed-2021", ["u1", "u2", "u3"], [0.1, 0.1, 0.1])
    write_run(a / "seed-2022", ["u1", "u2", "u3"], [0.1, 0.1, 0.1])
    write_run(b / "seed-2020", ["u1", "u2", "u3"], [0.4, 0.6, 0.9])
    write_run(b / "seed-2023", ["u1", "u2", "u3"], [0.0, 0.0, 0.0])
    res = compare_runs(a, b, metrics=("ndcg@10",))
    assert (res.n_seeds_a, res.n_seeds_b) == (1, 1)
    assert res.seeds_left_out == ("seed-2021", "seed-2022", "seed-2023")
    expected = paired_tests(np.array([0.5, 0.6, 0.7]), np.array([0.4, 0.6, 0.9]))
    assert fields(res["ndcg@10"]) == pytest.approx(as_row(expected))
    assert "left out: seed-2021, seed-2022, seed-2023" in format_comparison(res)
    # no seed in common: each run's mean over its own seeds, as before
    c = tmp_path / "c"
    write_run(c / "seed-7", ["u1", "u2", "u3"], [0.2, 0.2, 0.2])
    res = compare_runs(a, c, metrics=("ndcg@10",))
    assert (res.n_seeds_a, res.n_seeds_b, res.seeds_left_out) == (3, 1, ())
    assert res["ndcg@10"].mean_a == pytest.approx((0.7 + 0.8 + 0.9) / 9)


def test_seeds_restrict_the_pairing_to_the_seeds_a_table_is_over(tmp_path):
    """Runs directories with seeds 2020-2022, a table of seeds 2020-2021 (a `--seeds 2`
    command reusing them): its Δ and p must be on those two seeds, as its means are."""
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, (va, vb) in {2020: ([0.5, 0.6, 0.7], [0.4, 0.6, 0.9]), 2021: ([0.1, 0.3, 0.1], [0.3, 0.3, 0.2]),
                           2022: ([0.9, 0.9, 0.9], [0.0, 0.0, 0.0])}.items():
        write_run(a / f"seed-{seed}", ["u1", "u2", "u3"], va)
        write_run(b / f"seed-{seed}", ["u1", "u2", "u3"], vb)
    res = compare_runs(a, b, metrics=("ndcg@10",), seeds=[2021, 2020])
    assert (res.n_seeds_a, res.n_seeds_b, res.seeds_left_out) == (2, 2, ("seed-2022",))
    expected = paired_tests(np.array([0.3, 0.45, 0.4]), np.array([0.35, 0.45, 0.55]))
    assert fields(res["ndcg@10"]) == pytest.approx(as_row(expected))
    assert res.seeds_paired == ("seed-2020", "seed-2021")
    assert "Paired on seed-2020, seed-2021; left out: seed-2022." in format_comparison(res)
    assert compare_runs(a, b, metrics=("ndcg@10",))["ndcg@10"].diff < -0.2  # all three: seed 2022 swings it
    # a seed neither run holds in both is one line, not a silent pairing on everything
    with pytest.raises(GenrecsysError, match="no seed of 2030 has a seed-N directory in both runs"):
        compare_runs(a, b, metrics=("ndcg@10",), seeds=[2030])
    # single runs have no seeds to choose: the argument leaves them alone
    c, d = write_run(tmp_path / "c", ["u1"], [0.1]), write_run(tmp_path / "d", ["u1"], [0.2])
    assert compare_runs(c, d, metrics=("ndcg@10",), seeds=[2020])["ndcg@10"].diff == pytest.approx(0.1)


def test_seeds_of_reads_seed_and_aggregate_metrics():
    one = {"seed": 2020, "test": {}}
    agg = {"seeds": [2020, 2021, 2022], "test": {}}
    assert seeds_of(agg) == [2020, 2021, 2022]
    assert seeds_of(agg, {"seeds": [2021, 2020]}) == [2020, 2021]  # the first's order, the seeds both have
    assert seeds_of([one, {"seed": 2021}], agg) == [2020, 2021]  # a list of seeds' metrics
    assert seeds_of(one, {"test": {}}) is None  # a run that names no seed: pair on every shared one


def test_seed_directories_win_over_an_earlier_single_runs_leftovers(tmp_path):
    """A 5-seed run written where a 1-seed run was leaves that run's per_user.parquet at the
    top: the seeds are the run now (RELAND's table once paired the stale file)."""
    a = write_run(tmp_path / "a", ["u1", "u2"], [0.0, 0.0])
    b = write_run(tmp_path / "b", ["u1", "u2"], [0.9, 0.9])  # the earlier single run
    write_run(b / "seed-0", ["u1", "u2"], [0.2, 0.4])
    write_run(b / "seed-1", ["u1", "u2"], [0.4, 0.2])
    res = compare_runs(a, b, metrics=("ndcg@10",))
    assert res.n_seeds_b == 2 and res["ndcg@10"].mean_b == pytest.approx(0.3)


def test_users_stored_as_numbers_match_users_stored_as_text(tmp_path):
    a = write_run(tmp_path / "a", [1, 2], [0.0, 1.0])
    b = write_run(tmp_path / "b", ["1", "2"], [1.0, 1.0])
    assert compare_runs(a, b).n_users == 2


def test_stage_selects_rows(tmp_path):
    a = write_run(tmp_path / "a", ["u1", "u2"], [0.2, 0.4], stage="valid")
    b = write_run(tmp_path / "b", ["u1", "u2"], [0.6, 0.4], stage="valid")
    assert compare_runs(a, b, stage="valid")["ndcg@10"].diff == pytest.approx(0.2)
    assert compare_runs(a, b, stage="test")["ndcg@10"].diff == 0.0


def _one_line_error(match_path: Path, fn, *args, **kw) -> str:
    with pytest.raises(GenrecsysError) as err:
        fn(*args, **kw)
    msg = str(err.value)
    assert "\n" not in msg and str(match_path) in msg
    return msg


def test_missing_per_user_file_is_a_one_line_error_naming_the_dir(tmp_path):
    a = write_run(tmp_path / "a", ["u1"], [1.0])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "per_user.parquet" in _one_line_error(empty, compare_runs, a, empty)
    seeds = tmp_path / "seeds"
    write_run(seeds / "seed-0", ["u1"], [1.0])
    (seeds / "seed-1").mkdir()
    _one_line_error(seeds / "seed-1", compare_runs, a, seeds)


def test_runs_without_common_users_or_metric_are_errors(tmp_path):
    a = write_run(tmp_path / "a", ["u1", "u2"], [1.0, 0.0])
    b = write_run(tmp_path / "b", ["x1", "x2"], [1.0, 0.0])
    assert "no user in common" in _one_line_error(a, compare_runs, a, b)
    assert "recall@10" in _one_line_error(a, compare_runs, a, a, metrics=("recall@10",))
    assert "stage" in _one_line_error(a, compare_runs, a, a, stage="train")


def test_format_comparison_is_a_markdown_table(tmp_path):
    a = write_run(tmp_path / "a", ["u1", "u2", "u3", "u4"], [0.0, 0.5, 0.2, 0.1])
    b = write_run(tmp_path / "b", ["u1", "u2", "u3", "u4"], [0.5, 0.5, 0.7, 0.3])
    text = format_comparison(compare_runs(a, b))
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| metric"))
    assert lines[header] == "| metric | A | B | diff | t-test p | Wilcoxon p |"
    rows = [line.split(" | ") for line in lines[header + 2:]]
    assert [r[0].strip("| ") for r in rows] == list(METRICS)
    assert rows[0][1:4] == ["0.2000", "0.5000", "+0.3000"]
    assert f"A = `{a}`" in text and f"B = `{b}`" in text and "B − A" in text


def test_longtail_metrics_pair_only_users_in_the_slice_of_both_runs(tmp_path):
    nan = float("nan")
    users = ["u1", "u2", "u3", "u4"]
    a = write_run(tmp_path / "a", users, [0.1, 0.2, 0.3, 0.4])
    b = write_run(tmp_path / "b", users, [0.5, 0.2, 0.3, 0.4])
    for d, tail in ((a, [0.0, 1.0, nan, 0.5]), (b, [1.0, nan, nan, 0.5])):  # u2 in A's slice only
        df = pd.read_parquet(d / "per_user.parquet")
        df["longtail_ndcg@10"] = np.where(df["stage"] == "test", np.resize(tail, len(df)), nan)
        df.to_parquet(d / "per_user.parquet", index=False)
    res = compare_runs(a, b, metrics=("ndcg@10", "longtail_ndcg@10"))
    row = res["longtail_ndcg@10"]
    assert (res.n_users, res["ndcg@10"].n_users, row.n_users) == (4, 4, 2)  # u1 and u4
    assert fields(row) == pytest.approx(as_row(paired_tests(np.array([0.0, 0.5]), np.array([1.0, 0.5]))))
    assert "longtail_ndcg@10: 2 users paired" in format_comparison(res)
    with pytest.raises(GenrecsysError, match="no user in common has a value of longtail_ndcg@10"):
        compare_runs(a, b, stage="valid", metrics=("longtail_ndcg@10",))
