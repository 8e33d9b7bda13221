"""Load test of `genrecsys serve` on loopback: req/s and p50/p95/p99 latency of top-10
requests at 1, 8 and 64 concurrent clients, per run, with micro-batching on and off.

    genrecsys train --model sasrec --dataset ml-100k --output-dir runs/sasrec
    genrecsys train --model lightgcn --dataset ml-100k --output-dir runs/lightgcn
    python benchmarks/serve_load.py sasrec=runs/sasrec lightgcn=runs/lightgcn --requests 4000

Each configuration gets its own server process (same machine as the clients: on 2 cores
they compete, as they would for a user trying it). Bounded: a fixed request count per
point. The logic is in ``genrecsys.serve.load``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from genrecsys.eval.report import run_environment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=DIR")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--requests", type=int, default=4000, help="timed requests per point (after 200 untimed)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    p.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = p.parse_args()

    from genrecsys.cli.serve import run_names
    from genrecsys.config import load_experiment
    from genrecsys.experiment import load_split
    from genrecsys.serve.load import load_test, recommend_paths, served

    rows = []
    for name, run in run_names(args.runs).items():
        cfg_file = Path(run) / "config.yaml"
        split = load_split(load_experiment(cfg_file if cfg_file.is_file() else min(Path(run).glob("seed-*/config.yaml"))))
        paths = recommend_paths([str(u) for u in split.user_ids])
        for batching in (True, False):
            flags = [] if batching else ["--no-batching"]
            with served([run, "--threads", str(args.threads), *flags]) as url:
                for c in args.clients:
                    r = load_test(url, paths, c, args.requests, warmup=200)
                    rows.append({"run": name, "batching": batching, **r})
                    print(f"{name:10s} batching={'on ' if batching else 'off'} clients={c:3d}  {r['req_per_s']:7.1f} req/s  "
                          f"p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f}  p99 {r['p99_ms']:6.1f}  errors {r['errors']}",
                          flush=True)

    env = run_environment()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    print("\n| run | micro-batching | clients | req/s | p50 ms | p95 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {'on' if r['batching'] else 'off'} | {r['clients']} | {r['req_per_s']:.0f} | "
              f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |")
    print(f"\nEnvironment: {json.dumps(env)}")


if __name__ == "__main__":
    main()
