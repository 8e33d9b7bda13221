"""Time to the best checkpoint, settings side by side in one run: every setting trained
over the same seeds (interleaved, order rotating), with best epoch, s/epoch, seconds to
best and test accuracy, and each setting against the first (the baseline): the ratio of
seconds to best and a paired test of test NDCG@10.

    python benchmarks/train_speed.py --model sasrec --seeds 5 --threads 2 \\
        --setting "torch-1e-3:model_params.encoder_impl=torch" \\
        --setting "cpu-1e-3" --setting "cpu-4e-3:train.lr=0.004"

A setting is NAME[:dotted.field=value,...] over ExperimentConfig(model=--model); the
logic is genrecsys.stages.speed. Run it on an idle machine: the load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from genrecsys.eval.report import run_environment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sasrec")
    p.add_argument("--setting", action="append", required=True, help="NAME[:field=value,...]; the first is the baseline")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs-dir", default="/tmp/genrecsys-bench/train-speed")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="also write the figures as JSON")
    args = p.parse_args()


    from genrecsys.config import ExperimentConfig, TrainConfig
    from genrecsys.errors import GenrecsysError
    from genrecsys.stages.speed import setting_from_spec, time_to_best, time_to_best_table

    base = ExperimentConfig(model=args.model, train=TrainConfig(threads=args.threads, progress=False))
    try:
        settings = dict(setting_from_spec(s, base) for s in args.setting)
    except GenrecsysError as exc:
        p.error(str(exc))
    load_before = os.getloadavg()
    result = time_to_best(settings, args.seeds, Path(args.runs_dir) / args.model, cache_dir=args.cache_dir)
    env = run_environment(threads=args.threads, load_average_before=load_before)
    print(f"Environment: {json.dumps(env)}\n")
    print(time_to_best_table(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"env": env, "result": result}, indent=2))


if __name__ == "__main__":
    main()
