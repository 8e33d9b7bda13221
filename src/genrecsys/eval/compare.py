"""Paired comparison of two finished runs from their per-user metric values.

Each run directory holds per_user.parquet (columns stage, user, <metric>...). A
multi-seed run directory (from `run_seeds`) has none at its top; its seed-N
subdirectories each have one. Then each user's value is the mean over the seeds in
which that user was evaluated, *before* pairing: the test asks whether B beats A for
the same users, and averaging over seeds keeps one pair per user instead of treating
seeds as extra, non-independent users. Two multi-seed runs that share some seeds but not
all (a row still missing seeds beside a finished reference) are paired on the seeds they
share: a mean over seeds the other run lacks would put seed-to-seed variance into the
difference (the seeds left out are on the result).

Users are matched by raw user id; only users present in both runs are compared (the
counts left out are on the result). A per-user value may be NaN where the metric is not
defined for that user: the long-tail metrics (`longtail_ndcg@10`, ...) are NaN outside
the long-tail slice. Each metric is then tested on the users for whom both runs define
it (for the long tail: users in the slice of both runs), and its row says how many.

>>> # result = compare_runs(Path("runs/sasrec"), Path("runs/bert4rec"))
>>> # print(format_comparison(result))
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from genrecsys.errors import GenrecsysError
from genrecsys.eval.report import markdown_table
from genrecsys.eval.significance import paired_tests

PER_USER = "per_user.parquet"


@dataclass
class MetricComparison:
    """One metric's paired test; `diff` is the mean of B − A (see `paired_tests`)."""

    metric: str
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float  # 95% CI of diff
    ci_high: float
    t_pvalue: float
    wilcoxon_pvalue: float
    n_nonzero: int  # users whose value differs between A and B
    n_users: int = 0  # users paired for this metric: those with a value (not NaN) in both runs


@dataclass
class ComparisonResult:
    run_a: Path
    run_b: Path
    stage: str
    n_users: int  # users present in both runs
    rows: list[MetricComparison]  # in the order the metrics were asked for
    n_seeds_a: int = 1
    n_seeds_b: int = 1
    only_a: int = 0  # users evaluated in A but not in B
    only_b: int = 0
    seeds_left_out: tuple[str, ...] = ()  # seed directories of either run not paired (not in both, or not asked for)
    seeds_paired: tuple[str, ...] = ()  # the seed directories paired (empty: single runs, or no seed in common)

    def __getitem__(self, metric: str) -> MetricComparison:
        for row in self.rows:
            if row.metric == metric:
                return row
        raise KeyError(metric)


def seed_dirs(run_dir: Path) -> list[Path]:
    """The seed-N subdirectories of a multi-seed run, in seed order ([] for a single run)."""
    return sorted((p for p in Path(run_dir).glob("seed-*") if p.is_dir()), key=_seed_number)


def per_user_files(run_dir: Path, seeds: Sequence[str] | None = None) -> list[Path]:
    """per_user.parquet of each seed-N subdirectory of a multi-seed run (only those named in
    ``seeds``, e.g. ``["seed-2020"]``, where given), else of the run.

    Seed directories win: a multi-seed run written into a directory that held a single
    run leaves that run's per_user.parquet beside the new seeds, and it is not theirs."""
    d = Path(run_dir)
    dirs = [p for p in seed_dirs(d) if seeds is None or p.name in seeds]
    if not dirs and (d / PER_USER).is_file():
        return [d / PER_USER]
    if not dirs:
        raise GenrecsysError(f"{d}: no {PER_USER} (and no seed-N subdirectories holding one)")
    missing = [p for p in dirs if not (p / PER_USER).is_file()]
    if missing:
        raise GenrecsysError(f"{missing[0]}: no {PER_USER} in this seed directory")
    return [p / PER_USER for p in dirs]


def load_per_user(run_dir: Path, stage: str, metrics: tuple[str, ...], seeds: Sequence[str] | None = None):
    """Per-user metric values of one run and stage, averaged over seeds (those named in
    ``seeds`` where given, see :func:`per_user_files`): (frame indexed by user with one
    column per metric, number of seeds). NaN values are skipped in the mean over seeds; a
    user with no value in any seed stays NaN."""
    import pandas as pd

    frames = []
    for path in per_user_files(run_dir, seeds):
        df = pd.read_parquet(path)
        lacking = [c for c in ("stage", "user", *metrics) if c not in df.columns]
        if lacking:
            have = ", ".join(c for c in df.columns if c not in ("stage", "user"))
            raise GenrecsysError(f"{path}: no column(s) {', '.join(lacking)} (has: {have})")
        df = df[df["stage"] == stage]
        if df.empty:
            raise GenrecsysError(f"{path}: no rows for stage {stage!r}")
        frames.append(df.assign(user=df["user"].astype(str))[["user", *metrics]])
    values = pd.concat(frames, ignore_index=True).groupby("user", sort=True)[list(metrics)].mean()
    return values, len(frames)


def compare_runs(run_a: Path, run_b: Path, stage: str = "test",
                 metrics: tuple[str, ...] = ("ndcg@10", "hit@10", "mrr@10"),
                 users: Sequence[str] | None = None, seeds: Iterable[int] | None = None) -> ComparisonResult:
    """Pair the per-user values of two runs by user and test B − A for each metric;
    ``users`` (raw ids): pair only these (e.g. the users an LLM re-ranker was run on).

    ``seeds`` (seed numbers, of two multi-seed runs): pair on these of the seeds both runs
    have, e.g. the seeds a table's means are over (:func:`seeds_of`) where the directories
    hold more, left by a command that ran more seeds; the rest are on ``seeds_left_out``."""
    metrics = tuple(metrics)
    names_a, names_b = ({p.name for p in seed_dirs(r)} for r in (run_a, run_b))
    shared = names_a & names_b
    if seeds is not None and shared:
        wanted = sorted(set(seeds))
        shared &= {f"seed-{s}" for s in wanted}
        if not shared:
            raise GenrecsysError(f"{run_a} and {run_b}: no seed of {', '.join(map(str, wanted)) or '(none)'} "
                                 "has a seed-N directory in both runs")
    paired = sorted(shared, key=lambda n: _seed_number(Path(n))) if shared else None
    left_out = tuple(sorted((names_a | names_b) - shared, key=lambda n: _seed_number(Path(n)))) if shared else ()
    a, n_seeds_a = load_per_user(Path(run_a), stage, metrics, paired)
    b, n_seeds_b = load_per_user(Path(run_b), stage, metrics, paired)
    common = a.index.intersection(b.index)
    if users is not None:
        common = common.intersection([str(u) for u in users])
    if len(common) == 0:
        raise GenrecsysError(f"{run_a} and {run_b}: no user in common for stage {stage!r} (different datasets?)")
    a_c, b_c = a.loc[common], b.loc[common]
    rows = []
    for m in metrics:
        x, y = a_c[m].to_numpy(np.float64), b_c[m].to_numpy(np.float64)
        both = ~(np.isnan(x) | np.isnan(y))
        if not both.any():
            raise GenrecsysError(f"{run_a} and {run_b}: no user in common has a value of {m} for stage {stage!r}"
                                 " (an empty long-tail slice?)")
        t = paired_tests(x[both], y[both])
        rows.append(MetricComparison(m, t["mean_a"], t["mean_b"], t["mean_diff"], t["ci_low"], t["ci_high"],
                                     t["t_pvalue"], t["wilcoxon_pvalue"], t["n_nonzero"], int(both.sum())))
    return ComparisonResult(Path(run_a), Path(run_b), stage, len(common), rows, n_seeds_a, n_seeds_b,
                            len(a) - len(common), len(b) - len(common), left_out, tuple(paired or ()))


def seeds_of(*runs: dict[str, Any] | list[dict[str, Any]]) -> list[int] | None:
    """The seeds every one of ``runs`` (metrics dicts: a seed's ``metrics.json`` with its
    ``seed``, an aggregate's with its ``seeds``, or a list of seeds' metrics) is over, in
    order: what :func:`compare_runs` should pair on for a table of their means. None where
    one of them names no seed (a run from before seeds were recorded): pair on all shared."""
    common: list[int] | None = None
    for run in runs:
        if isinstance(run, list):
            own = [r.get("seed") for r in run]
        else:
            own = run.get("seeds") if "seeds" in run else [run.get("seed")]
        if not own or any(s is None for s in own):
            return None
        common = [int(s) for s in own] if common is None else [s for s in common if s in {int(x) for x in own}]
    return common


def format_comparison(result: ComparisonResult, digits: int = 4) -> str:
    """Markdown: who A and B are, then one row per metric (means, B − A, p-values)."""
    def seeds(n: int) -> str:
        return f" (mean of {n} seeds)" if n > 1 else ""

    lines = [f"A = `{result.run_a}`{seeds(result.n_seeds_a)}",
             f"B = `{result.run_b}`{seeds(result.n_seeds_b)}",
             f"Stage {result.stage}, {result.n_users} users paired; diff is B − A."]
    if result.seeds_left_out:
        lines.append(f"Paired on {', '.join(result.seeds_paired)}; left out: {', '.join(result.seeds_left_out)}.")
    if result.only_a or result.only_b:
        lines.append(f"Left out: {result.only_a} users only in A, {result.only_b} only in B.")
    lines += [f"{r.metric}: {r.n_users} users paired (those with a value in both runs)."
              for r in result.rows if r.n_users != result.n_users]
    rows = [[r.metric, f"{r.mean_a:.{digits}f}", f"{r.mean_b:.{digits}f}", f"{r.diff:+.{digits}f}",
             _p(r.t_pvalue), _p(r.wilcoxon_pvalue)] for r in result.rows]
    table = markdown_table(["metric", "A", "B", "diff", "t-test p", "Wilcoxon p"], rows)
    return "\n".join(lines) + "\n\n" + table


def _p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "<1e-4" if p < 1e-4 else f"{p:.4f}"


def _seed_number(p: Path) -> tuple[int, str]:
    tail = p.name.removeprefix("seed-")
    return (int(tail), "") if tail.isdigit() else (1 << 62, tail)
