"""Train every backbone on ML-100K (leave-one-out, full ranking) over several seeds and
print a Markdown table: HR@10, NDCG@10, MRR@10 (mean ± std), epochs, s/epoch, time to
best, peak memory. Each model runs in its own process so peak RSS is per model.

    python benchmarks/backbones.py --seeds 5 --threads 2 --out benchmarks/results/backbones.json
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from genrecsys.eval.report import run_environment

BACKBONES = ["pop", "bpr", "neumf", "lightgcn", "ngcf", "gru4rec", "sasrec", "bert4rec"]


def run_one(model: str, seeds: int, threads: int, out_dir: Path, cache_dir: str | None) -> dict:
    """Child process: train one model over seeds; report metrics + peak RSS."""
    from genrecsys.config import ExperimentConfig, TrainConfig
    from genrecsys.experiment import run_seeds

    cfg = ExperimentConfig(model=model, train=TrainConfig(threads=threads, progress=False))
    agg = run_seeds(cfg, out_dir / model, seeds, cache_dir=cache_dir)
    agg.pop("runs", None)
    agg["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return agg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=BACKBONES)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs-dir", default="/tmp/genrecsys-bench/backbones")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="write the aggregated results as JSON here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.seeds, args.threads, Path(args.runs_dir), args.cache_dir)))
        return
    from genrecsys.eval.peers import RECBOLE_ML100K


    results = {}
    for model in args.models:
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--child", model, "--seeds", str(args.seeds), "--threads", str(args.threads),
               "--runs-dir", args.runs_dir] + (["--cache-dir", args.cache_dir] if args.cache_dir else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"{model} failed")
        results[model] = json.loads(proc.stdout.strip().splitlines()[-1])
        results[model]["wall_seconds"] = time.perf_counter() - t0
        # saved per model as it finishes, so an interrupted multi-model run loses nothing
        (Path(args.runs_dir) / model / "bench.json").write_text(json.dumps(results[model], indent=2))
        print(f"{model}: done in {results[model]['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
    env = run_environment(threads=args.threads, seeds=args.seeds)
    print(f"Environment: {json.dumps(env)}\n")
    print("| model | HR@10 | NDCG@10 | MRR@10 | RecBole NDCG@10 | epochs | best epoch | s/epoch | s to best | train s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model, r in results.items():
        t, s = r["test"], r["test_std"]
        peer = RECBOLE_ML100K.get(model, {})
        peer_txt = f"{peer['ndcg@10']:.4f}" + ("" if peer.get("converged", True) else "*") if peer else "—"
        print(f"| {model} | {t['hit@10']:.4f} ± {s['hit@10']:.4f} | {t['ndcg@10']:.4f} ± {s['ndcg@10']:.4f} | "
              f"{t['mrr@10']:.4f} ± {s['mrr@10']:.4f} | {peer_txt} | {r['epochs']:.1f} | {r['best_epoch'] + 1:.1f} | "
              f"{r['seconds_per_epoch']:.2f} | {r['seconds_to_best']:.1f} | {r['train_seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"env": env, "results": results}, indent=2))


if __name__ == "__main__":
    main()
