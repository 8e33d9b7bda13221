"""GENRE's eight downstream models (+ Pop and SASRec) on ML-100K constructed impressions.

Protocol: chronological leave-one-out; each validation/test target becomes an impression
of the clicked item + 24 items the user never interacted with, drawn uniformly (fixed
seed 0, the same impressions for every model and training seed). To have GENRE's
new/warm user groups on ML-100K (whose users all rated >= 20 movies), 21% of the users
(GENRE's MIND new-user ratio, Table 1) keep only their 1-3 most recent training items
(`genrecsys.data.coldstart`); they are "new" (history < 5 at evaluation), the rest warm.
Early stopping on validation AUC (patience 3, at most 20 epochs for the eight models — a
CPU budget; SASRec keeps its usual patience 10). Every model runs seeds 2020.. in its own
process, one after the other, so nothing else of ours competes for the CPU. Seeds already
finished under --runs-dir are reused and a seed cut short resumes from its checkpoint, so an
interrupted benchmark continues where it stopped.

    python benchmarks/news_models.py --seeds 5 --threads 1 --lr 0.003 --max-epochs 20 \\
        --cache-dir /tmp/gcache --out benchmarks/results/news_models.json

prints one Markdown table: mean ± std of AUC / MRR / nDCG@5 / nDCG@10 for all, new and
warm users, seconds per epoch, epochs, and each model's AUC margin over Pop.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from genrecsys.eval.report import run_environment

MODELS = ["pop", "naml", "lstur", "nrms", "plmnr", "bst", "dcn", "pnn", "din", "sasrec"]
BASELINES = ("pop", "sasrec")  # trained with --baseline-patience / --baseline-max-epochs
METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")
GROUPS = (("all", ""), ("new", "new_"), ("warm", "warm_"))


def run_one(model: str, args: argparse.Namespace) -> dict:
    """Child process: one model over all seeds on the shared split."""
    from dataclasses import replace

    from genrecsys.config import DataConfig, EvalConfig, ExperimentConfig, ImpressionConfig, TrainConfig
    from genrecsys.data.coldstart import simulate_cold_start
    from genrecsys.eval.report import aggregate_seeds
    from genrecsys.experiment import load_split, run_experiment

    cfg = ExperimentConfig(
        model=model, data=DataConfig(dataset="ml-100k"),
        train=TrainConfig(threads=args.threads, progress=False,
                          patience=args.baseline_patience if model in BASELINES else args.patience,
                          epochs=args.baseline_max_epochs if model in BASELINES else args.max_epochs,
                          **({"lr": args.lr} if args.lr and model not in BASELINES else {})),
        eval=EvalConfig(protocol="impressions", impressions=ImpressionConfig(negatives=args.negatives,
                                                                             sampler=args.sampler)))
    split = load_split(cfg, args.cache_dir)
    if args.cold_start > 0:
        split = simulate_cold_start(split, args.cold_start, 1, 3, seed=0).split
    runs = []
    for i in range(args.seeds):
        run_cfg = replace(cfg, train=replace(cfg.train, seed=2020 + i))
        run_dir = Path(args.runs_dir) / model / f"seed-{2020 + i}"
        if (run_dir / "metrics.json").is_file():  # finished by an earlier, interrupted invocation
            runs.append(json.loads((run_dir / "metrics.json").read_text()))
        else:  # resume=True also continues a seed that was cut short from its last checkpoint
            runs.append(run_experiment(run_cfg, run_dir, split=split, cache_dir=args.cache_dir, resume=True))
        print(f"{model} seed {2020 + i}: test auc {runs[-1]['test']['auc']:.4f}, {runs[-1]['epochs']} epochs, "
              f"{runs[-1]['seconds_per_epoch']:.1f} s/epoch", file=sys.stderr, flush=True)
    agg = aggregate_seeds(runs)
    agg["runs"] = [{k: r[k] for k in ("seed", "test", "valid", "epochs", "best_epoch", "seconds_per_epoch")} for r in runs]
    agg["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return agg


def fmt(mean: float, std: float) -> str:
    return "—" if mean != mean else f"{mean:.4f} ± {std:.4f}"


def table(results: dict) -> str:
    pop = results.get("pop", {}).get("test", {}).get("auc")
    head = "| model | users | AUC | MRR | nDCG@5 | nDCG@10 | AUC − Pop | s/epoch | epochs |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for model in sorted(results, key=lambda m: MODELS.index(m) if m in MODELS else len(MODELS)):
        r = results[model]
        t, s = r["test"], r["test_std"]
        for label, prefix in GROUPS:
            cells = [fmt(t[prefix + m], s[prefix + m]) for m in METRICS]
            margin = f"{t[prefix + 'auc'] - results['pop']['test'][prefix + 'auc']:+.4f}" if pop is not None else "—"
            extra = [f"{r['seconds_per_epoch']:.1f}", f"{r['epochs']:.1f}"] if label == "all" else ["", ""]
            lines.append(f"| {model if label == 'all' else ''} | {label} ({int(t[prefix + 'impressions'])}) | "
                         + " | ".join(cells) + f" | {margin} | " + " | ".join(extra) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--patience", type=int, default=3, help="validations without AUC gain before stopping")
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=None, help="override the news/CTR models' learning rate")
    p.add_argument("--baseline-patience", type=int, default=10, help="SASRec's patience (its usual setting)")
    p.add_argument("--baseline-max-epochs", type=int, default=200)
    p.add_argument("--negatives", type=int, default=24)
    p.add_argument("--sampler", default="uniform", choices=["uniform", "popularity"])
    p.add_argument("--cold-start", type=float, default=0.21, help="fraction of users cut to 1-3 training items")
    p.add_argument("--runs-dir", default="/tmp/genrecsys-bench/news")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="write the aggregated results as JSON here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args)))
        return

    results = {}
    for model in args.models:
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--child", model] + [
            x for k, v in vars(args).items() if k not in ("child", "models", "out") and v is not None
            for x in (f"--{k.replace('_', '-')}", str(v))]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{model} failed")
        results[model] = json.loads(proc.stdout.strip().splitlines()[-1])
        results[model]["wall_seconds"] = time.perf_counter() - t0
        print(f"{model}: done in {results[model]['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
        if args.out:  # partial results survive an interruption
            _write(args, results)
    env = run_environment(processor=platform.processor() or platform.machine(), threads=args.threads,
                          seeds=args.seeds, patience=args.patience, max_epochs=args.max_epochs, lr=args.lr,
                          baseline_patience=args.baseline_patience, baseline_max_epochs=args.baseline_max_epochs,
                          negatives=args.negatives, sampler=args.sampler, cold_start=args.cold_start)
    print(f"Environment: {json.dumps(env)}\n")
    print(table(results), end="")
    if args.out:
        _write(args, results, env)


def _write(args, results, env=None) -> None:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"env": env, "results": results}, indent=2))


if __name__ == "__main__":
    main()
