"""Holistic table of finished runs on one split: accuracy, coverage, Gini, novelty, ILD,
popularity lift, long-tail share, calibration, and the worst user group's NDCG@10 with the
best-worst gap per grouping — from existing runs, nothing retrained.

    python benchmarks/holistic.py sasrec=runs/sasrec hstu=runs/hstu reland=runs/reland-sasrec

The logic is in ``genrecsys.stages.holistic`` and ``genrecsys.eval.beyond``.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=DIR")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default="benchmarks/results/holistic.json")
    args = p.parse_args()

    from genrecsys.cli.serve import run_names
    from genrecsys.eval.report import markdown_table
    from genrecsys.stages.holistic import TABLE_METRICS, run_holistic, worst_group

    results = {name: run_holistic(d, args.cache_dir, args.k) for name, d in run_names(args.runs).items()}
    groupings = ("gender", "age", "occupation", "activity", "new_vs_warm")
    rows = []
    for name, res in results.items():
        s = res["summary"]
        cells = [f"{s.get(m, float('nan')):.4f}" for m in TABLE_METRICS]
        for g in groupings:
            worst, value, gap = worst_group(res, g)
            cells.append(f"{worst} {value:.3f} / {gap:.3f}")
        rows.append([name, *cells])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip()
    env = {"command": " ".join(["python", *sys.argv]), "commit": commit, "python": platform.python_version()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"env": env, "results": results}, indent=2, default=float))
    print(markdown_table(["run", *TABLE_METRICS, *(f"{g}: worst NDCG@10 / gap" for g in groupings)], rows))
    print(f"Environment: {json.dumps(env)}")


if __name__ == "__main__":
    main()
