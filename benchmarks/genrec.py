"""GenRec on ML-100K (leave-one-out, all-item ranking, seen items masked), GenRec §7.2 metrics
HR@1/5/10 and NDCG@5/10, mean ± std over seeds.

  table1  GenRec (with cloze pretraining) vs SASRec, GRU4Rec, BERT4Rec, Pop on the same split
  table3  GenRec with vs without pretraining
  decode  constrained vs unconstrained beam search (beam 20): invalid rate, top-20 agreement
          with exact scoring, latency per user

Each model runs in its own process. ``--reuse-runs DIR`` reads baselines already trained on
the same protocol (e.g. by benchmarks/backbones.py) from ``DIR/<model>/metrics.json``;
``--reuse-json FILE ...`` reads them from the aggregated JSON that benchmarks/backbones.py
writes (``results/<model>``). GenRec seeds already finished under --runs-dir are reused, so
table1 after table3 trains nothing twice.

    python benchmarks/genrec.py table1 --seeds 5 --threads 2 --out benchmarks/results/genrec_table1.json
    python benchmarks/genrec.py table3 --seeds 5 --threads 2 --out benchmarks/results/genrec_table3.json
    python benchmarks/genrec.py decode --run RUN_DIR
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

METRICS = ["hit@1", "hit@5", "hit@10", "ndcg@5", "ndcg@10"]


def train(model: str, seeds: int, threads: int, out: Path, cache_dir: str | None, params: dict, pretrain: int | None,
          patience: int) -> dict:
    from genrecsys.config import EvalConfig, ExperimentConfig, TrainConfig
    from genrecsys.experiment import run_seeds

    cfg = ExperimentConfig(model=model, model_params=params, eval=EvalConfig(ks=(1, 5, 10, 20)),
                           train=TrainConfig(threads=threads, progress=False, pretrain_epochs=pretrain,
                                             patience=patience))
    t0 = time.perf_counter()
    agg = run_seeds(cfg, out, seeds, cache_dir=cache_dir, resume=True)
    agg["wall_seconds"] = time.perf_counter() - t0
    agg.pop("runs", None)
    return agg


def _child(args, name: str, model: str, params: dict, pretrain: int | None) -> dict:
    if model != "genrec":
        for f in args.reuse_json or []:
            found = json.loads(Path(f).read_text()).get("results", {}).get(model)
            if found is not None:
                return {**found, "reused_from": f}
    reuse = Path(args.reuse_runs) / model / "metrics.json" if args.reuse_runs and model != "genrec" else None
    if reuse is not None and reuse.is_file():
        agg = json.loads(reuse.read_text())
        agg["reused_from"] = str(reuse)
        return agg
    cmd = [sys.executable, __file__, "--child", json.dumps({"model": model, "params": params, "pretrain": pretrain,
                                                            "out": str(Path(args.runs_dir) / name)}),
           "--seeds", str(args.seeds), "--threads", str(args.threads), "--patience", str(args.patience)] + (["--cache-dir", args.cache_dir] if args.cache_dir else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(name: str, agg: dict) -> str:
    t, s = agg["test"], agg.get("test_std", {})
    cells = [f"{t[m]:.4f} ± {s.get(m, 0):.4f}" for m in METRICS]
    per_seed = agg.get("train_seconds", agg.get("wall_seconds", 0))
    mark = " (†)" if "reused_from" in agg else ""  # † = trained by benchmarks/backbones.py, same split
    return f"| {name}{mark} | " + " | ".join(cells) + f" | {agg.get('epochs', float('nan')):.1f} | {per_seed:.0f} |"


def table(args, runs: list[tuple[str, str, dict, int | None]]) -> None:
    results = {}
    for name, model, params, pretrain in runs:
        results[name] = _child(args, name, model, params, pretrain)
        print(f"{name}: ndcg@10 {results[name]['test']['ndcg@10']:.4f}", file=sys.stderr, flush=True)
    print(f"\nML-100K, LOO, all-item ranking, seen masked, {args.seeds} seeds, {args.threads} threads\n")
    print("| model | " + " | ".join(m.upper().replace("HIT", "HR") for m in METRICS) + " | epochs | train s/seed |")
    print("|---|" + "---:|" * (len(METRICS) + 2))
    for name, agg in results.items():
        print(_row(name, agg))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


def decode(args) -> None:
    import numpy as np
    import torch

    from genrecsys.eval.ranking import pad_left
    from genrecsys.experiment import load_run
    from genrecsys.generative.beam import beam_search

    torch.set_num_threads(args.threads)
    cfg, split, model = load_run(args.run, args.cache_dir)
    model.eval()
    users = split.eval_users("test")
    hist = split.history("test")
    seqs = torch.as_tensor(pad_left(hist, users, cfg.data.max_seq_len))
    u = torch.as_tensor(users)
    out = {}
    with torch.no_grad():
        exact = []
        for s in range(0, len(users), 128):
            sc = model.score(u[s:s + 128], seqs[s:s + 128])
            exact.append(torch.topk(sc, 20, dim=1).indices.numpy())
        exact = np.concatenate(exact)
    for constrained in (True, False):
        t0 = time.perf_counter()
        items, invalid, generated = [], 0, 0
        for s in range(0, len(users), 128):
            r = beam_search(model, u[s:s + 128], seqs[s:s + 128], k=20, beam=20, constrained=constrained)
            items.append(r.items)
            invalid += r.invalid
            generated += r.generated
        wall = time.perf_counter() - t0
        items = np.concatenate(items)
        agree = float(np.mean([len(set(a) & set(b)) / 20 for a, b in zip(items, exact)]))
        out["constrained" if constrained else "unconstrained"] = {
            "invalid_rate": invalid / generated, "invalid": invalid, "generated": generated,
            "top20_overlap_with_exact": agree, "ms_per_user": 1000 * wall / len(users)}
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", choices=["table1", "table3", "decode"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--runs-dir", default="/tmp/genrecsys-bench/genrec")
    p.add_argument("--patience", type=int, default=10, help="validations without NDCG@10 gain before stopping")
    p.add_argument("--reuse-runs", help="directory with <model>/metrics.json of baselines on the same protocol")
    p.add_argument("--reuse-json", nargs="+", help="aggregated baseline results written by benchmarks/backbones.py --out")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--run", help="decode: a trained GenRec run directory")
    p.add_argument("--out", default=None)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(train(spec["model"], args.seeds, args.threads, Path(spec["out"]), args.cache_dir,
                               spec["params"], spec["pretrain"], args.patience)))
        return
    if args.what == "table1":
        table(args, [("GenRec", "genrec", {}, args.pretrain_epochs), ("SASRec", "sasrec", {}, None),
                     ("GRU4Rec", "gru4rec", {}, None), ("BERT4Rec", "bert4rec", {}, None), ("Pop", "pop", {}, None)])
    elif args.what == "table3":
        table(args, [("GenRec", "genrec", {}, args.pretrain_epochs), ("GenRec w/o pretraining", "genrec", {}, 0)])
    elif args.what == "decode":
        if not args.run:
            raise SystemExit("decode needs --run RUN_DIR")
        decode(args)
    else:
        p.print_help()


if __name__ == "__main__":
    main()
