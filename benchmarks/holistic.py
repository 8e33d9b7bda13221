"""Holistic table of finished runs on one split: accuracy, coverage, Gini, novelty, ILD,
popularity lift, long-tail share, calibration, and the worst user group's NDCG@10 with the
best-worst gap per grouping — from existing runs, nothing retrained.

    python benchmarks/holistic.py sasrec=runs/sasrec hstu=runs/hstu reland=runs/reland-sasrec [--all-seeds]

A multi-seed run counts its first seed, or with ``--all-seeds`` the mean (± std) over its
seeds (group cells: the gap of the per-group means). Runs under the impression protocol
(GENRE's news/CTR models) are listed with it: their NDCG@10 ranks 25 candidates, while the
list metrics are always those of the full-catalog top-10.

The logic is in ``genrecsys.stages.holistic`` and ``genrecsys.eval.beyond``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from genrecsys.eval.report import run_environment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=DIR")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--all-seeds", action="store_true", help="mean over every seed of a multi-seed run")
    p.add_argument("--out", default="benchmarks/results/holistic.json")
    args = p.parse_args()

    from genrecsys.cli.serve import run_names
    from genrecsys.eval.report import markdown_table
    from genrecsys.stages.holistic import holistic_table, run_holistic

    results = {name: run_holistic(d, args.cache_dir, args.k, all_seeds=args.all_seeds)
               for name, d in run_names(args.runs).items()}
    header, rows = holistic_table(results)
    env = run_environment()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"env": env, "results": results}, indent=2, default=float))
    print(markdown_table(header, rows))
    print(f"Environment: {json.dumps(env)}")


if __name__ == "__main__":
    main()
