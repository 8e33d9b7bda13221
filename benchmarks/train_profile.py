"""Where an epoch's time goes, per model: batches, forward, loss, backward, optimizer,
validation (seconds per epoch), float32 and bfloat16 autocast side by side with the ratio.

    python benchmarks/train_profile.py --models sasrec bpr --epochs 2 --threads 2

The timing lives in ``genrecsys.train.timing.epoch_breakdown``; this script parses
arguments and prints. Run it on an idle machine.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from genrecsys.eval.report import run_environment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["sasrec"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="also write the figures as JSON")
    args = p.parse_args()

    import torch

    from genrecsys.config import ExperimentConfig
    from genrecsys.eval.report import markdown_table
    from genrecsys.experiment import build_model, load_split
    from genrecsys.train.timing import PARTS, epoch_breakdown

    torch.set_num_threads(args.threads)
    split = load_split(ExperimentConfig(), args.cache_dir)
    rows, out = [], {}
    for name in args.models:
        for bf16 in (False, True):
            torch.manual_seed(0)
            try:
                r = epoch_breakdown(build_model(name, {}, split), split, epochs=args.epochs, bf16=bf16)
            except (RuntimeError, NotImplementedError) as exc:  # e.g. a sparse matmul without a bf16 kernel
                if not bf16:
                    raise
                rows.append([name, "bf16 autocast", f"not supported: {str(exc).splitlines()[0][:80]}",
                             *[""] * (len(PARTS) + 2)])
                continue
            out[f"{name}{'-bf16' if bf16 else ''}"] = r
            ratio = r["total"] / out[name]["total"]
            rows.append([name, "bf16 autocast" if bf16 else "float32", *(f"{r[k]:.3f}" for k in PARTS),
                         f"{r['total']:.2f}", str(r["steps_per_epoch"]), f"{ratio:.2f}"])
    env = run_environment(threads=args.threads)
    print(f"Environment: {json.dumps(env)}\n")
    print(markdown_table(["model", "precision", *PARTS, "s/epoch", "steps", "vs float32"], rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"env": env, "results": out}, indent=2))


if __name__ == "__main__":
    main()
