"""The survey's generative families on ML-100K (leave-one-out, full ranking, seen items
masked): Mult-VAE, Mult-DAE, DiffRec, L-DiffRec, CFGAN, text retrieval (zero-shot and
fine-tuned) and the LLM as ranker (llmrank, SmolLM2 over SASRec's and over BPR's top-20)
beside SASRec and BPR, over seeds, with paired tests against SASRec and the issue's goals
checked. llmrank ranks a fixed sample of --llm-users users (the others keep the retriever's
order) and gets a second table: the paired test against its retriever on those users,
answer failures, contract violations and the position-bias check.

    python benchmarks/families.py --seeds 5
    python benchmarks/families.py --seeds 5 --rows Mult-VAE DiffRec --jobs 2

Resumable: finished runs under --runs-dir are reused. The logic lives in
``genrecsys.stages.families`` (rows, table) and ``genrecsys.stages.generative`` (runs,
paired tests); this script parses arguments and prints.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from genrecsys.errors import GenrecsysError
from genrecsys.eval.report import run_environment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--runs-dir", default="/tmp/genrecsys-bench/families")
    p.add_argument("--cache-dir", default=None, help="genrecsys cache (datasets)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--jobs", type=int, default=1, help="training processes at once")
    p.add_argument("--rows", nargs="+", default=None, help="only these row labels (default: all)")
    p.add_argument("--llm-users", type=int, default=200,
                   help="users llmrank ranks (a fixed sample; 0: all) — ~0.3 s per prompt, 3 prompts per user and stage")
    p.add_argument("--llm-dtype", default="bfloat16", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--out", default="benchmarks/results/families.json")
    args = p.parse_args()


    from genrecsys.config import TrainConfig
    from genrecsys.stages import families as f
    from genrecsys.stages import generative as g

    runs = Path(args.runs_dir)
    cache = Path(args.cache_dir) if args.cache_dir else None
    t0 = time.perf_counter()
    rows = [r for r in f.default_rows(runs, args.llm_users or None, args.llm_dtype) if not args.rows or r.label in args.rows]
    train = TrainConfig(device=args.device, threads=args.threads, progress=False)
    results = g.train_rows(rows, runs, args.seeds, train, cache, jobs=args.jobs)
    tests = g.paired_vs_reference(runs, rows, results)  # {} without the SASRec row
    table = g.summarize(rows, results, tests, {}, {}, metrics=f.METRICS)
    llm_table = f.llmrank_table(runs, rows, cache)
    env = run_environment(device=args.device, threads=args.threads, jobs=args.jobs, seeds=args.seeds,
                          llm_users=args.llm_users, llm_dtype=args.llm_dtype,
                          wall_seconds=round(time.perf_counter() - t0))
    g.save(table, Path(args.out))
    Path(args.out).with_suffix(".llmrank.json").write_text(json.dumps(llm_table, indent=2))
    Path(args.out).with_suffix(".env.json").write_text(json.dumps(env, indent=2))
    print(f"Environment: {json.dumps(env)}\n")
    print(f.markdown(table))
    for line in f.goals(table):
        print(f"- {line}")
    if llm_table:
        print("\nLLM as ranker, against its retriever on the users it ranked:\n")
        print(f.llmrank_markdown(llm_table))


if __name__ == "__main__":
    try:
        main()
    except GenrecsysError as exc:  # a reused run trained otherwise, a bad input file: one line, exit 1
        raise SystemExit(f"families.py: {exc}") from None
