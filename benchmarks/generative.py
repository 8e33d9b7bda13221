"""Generative retrieval on ML-100K (leave-one-out, full ranking): SASRec, HSTU, TIGER with
residual k-means and RQ-VAE semantic ids, GenRec on digit ids and on semantic ids (both
trained on every transition by windows) — over seeds, with paired tests against SASRec.

    python benchmarks/generative.py --seeds 5
    python benchmarks/generative.py --seeds 5 --device cuda --jobs 10   # same table on a GPU

Resumable: finished runs under --runs-dir are reused, and several processes (--jobs, or
the same command started twice) share the work. The logic lives in
``genrecsys.stages.generative``; this script parses arguments and prints.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from genrecsys.errors import GenrecsysError
from genrecsys.eval.report import run_environment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--runs-dir", default="/tmp/genrecsys-bench/generative")
    p.add_argument("--cache-dir", default=None, help="genrecsys cache (datasets, text vectors)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--jobs", type=int, default=1, help="training processes at once")
    p.add_argument("--rows", nargs="+", default=None, help="only these row labels (default: all six)")
    p.add_argument("--epochs", type=int, default=None, help="cap on epochs (default: the train config's, 300)")
    p.add_argument("--decode-users", type=int, default=None, help="test users for the beam-search timing (default: all)")
    p.add_argument("--out", default="benchmarks/results/generative.json")
    args = p.parse_args()

    import torch

    from genrecsys.config import ExperimentConfig, TrainConfig
    from genrecsys.experiment import load_split
    from genrecsys.stages import generative as g

    runs = Path(args.runs_dir)
    cache = Path(args.cache_dir) if args.cache_dir else None
    t0 = time.perf_counter()
    split = load_split(ExperimentConfig(), cache)
    codes = g.build_codes(split, runs, cache)
    rows = [r for r in g.default_rows({q: c["dir"] for q, c in codes.items()}) if not args.rows or r.label in args.rows]
    train = TrainConfig(device=args.device, threads=args.threads, progress=False)
    if args.epochs is not None:
        train = replace(train, epochs=args.epochs)
    results = g.train_rows(rows, runs, args.seeds, train, cache, jobs=args.jobs)
    print(f"trained in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    decode = {r.label: g.decode_stats(runs / r.slug / f"seed-{train.seed}", cache, users=args.decode_users,
                                      device=args.device)
              for r in rows if r.model in ("tiger", "genrec")}
    tests = g.paired_vs_reference(runs, rows, results) if any(r.label == g.REFERENCE for r in rows) else {}
    table = g.summarize(rows, results, tests, decode, codes)
    env = run_environment(device=args.device,
                          gpu=torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
                          threads=args.threads, jobs=args.jobs, seeds=args.seeds,
                          wall_seconds=round(time.perf_counter() - t0))
    g.save(table, Path(args.out))
    Path(args.out).with_suffix(".env.json").write_text(json.dumps(env, indent=2))
    print(f"Environment: {json.dumps(env)}\n")
    print(g.markdown(table))
    for q, c in codes.items():
        print(f"\nsemantic ids ({q}): {json.dumps(c['stats'], default=float)}")


if __name__ == "__main__":
    try:
        main()
    except GenrecsysError as exc:  # a reused run trained otherwise, a bad input file: one line, exit 1
        raise SystemExit(f"generative.py: {exc}") from None
