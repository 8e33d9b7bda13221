"""Fine-tuned LLM recommenders on ML-100K: llmsid vs TIGER vs SASRec (full ranking) and the
TALLRec few-shot curve vs BPR / SASRec (impressions), over seeds, with paired tests; each
trained TALLRec is also scored as a re-ranker of SASRec's top 50 on full ranking (--rerank).

    python benchmarks/llm_finetune.py --seeds 3
    python benchmarks/llm_finetune.py --seeds 3 --device cuda           # a GPU, when one is lent
    python benchmarks/llm_finetune.py --seeds 1 --layers 4 --epochs 5   # a CPU-sized run (first 4 blocks)
    python benchmarks/llm_finetune.py --probe 4 --layers 4              # cost of a run, from 4 steps
    python benchmarks/llm_finetune.py --parts retrieval --rows sasrec tiger   # some rows now, llmsid on a GPU later

Resumable: finished runs under --runs-dir are reused (only for the settings they were
trained with, else a one-line error) and an LLM run killed mid-epoch
continues from its last step checkpoint (--checkpoint-steps). The LLM is the embedded
SmolLM2-135M-Instruct unless --llm names a Hugging Face directory or GGUF file. The logic
lives in ``genrecsys.stages.llm_finetune`` and ``genrecsys.stages.generative``; this
script parses arguments and prints. It writes its wall time and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace
from pathlib import Path

from genrecsys.config import TRAIN_PRECISIONS
from genrecsys.errors import GenrecsysError
from genrecsys.eval.report import run_environment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--runs-dir", default="/tmp/genrecsys-bench/llm-finetune")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--llm", default=None, help="HF causal-LM directory or .gguf (default: the embedded SmolLM2-135M)")
    p.add_argument("--finetune", default="lora", choices=["lora", "full", "frozen"])
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-dropout", type=float, default=0.0,
                   help="llmsid rows: dropout on the LoRA adapters' input (named in the rows' labels)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="llmsid rows: dropout on a training window's input embeddings (named in the rows' labels)")
    p.add_argument("--layers", type=int, default=None, help="keep the LLM's first k blocks (default: all)")
    p.add_argument("--max-len", type=int, default=20, help="llmsid: history items per window")
    p.add_argument("--titles", type=int, default=0,
                   help="llmsid: write each history item as its code + its title's first K tokens (0: codes only)")
    p.add_argument("--align", type=float, default=0.0,
                   help="also train llmsid with LC-Rec's title <-> code alignment tasks at this weight (0: not)")
    p.add_argument("--ks", type=int, nargs="*", default=[16, 64, 256, 0],
                   help="TALLRec training examples (0 = every training transition)")
    p.add_argument("--rerank", type=int, default=50, metavar="N",
                   help="fewshot: also score each trained TALLRec run as a re-ranker of SASRec's top N on full "
                        "ranking (one test pass per run, nothing retrained; 0: not)")
    p.add_argument("--stride", type=int, default=10,
                   help="TALLRec k = all: consecutive transitions of a user trained in one pass over their titles")
    p.add_argument("--parts", nargs="+", default=["retrieval", "fewshot"], choices=["retrieval", "fewshot"],
                   help="retrieval: llmsid vs TIGER vs SASRec; fewshot: the TALLRec curve (with --probe: whose cost)")
    p.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                   help="train and table only these rows (a label, a run-directory name or a model name: "
                        "'--rows sasrec tiger' now, '--rows llmsid --device cuda' where a GPU is; default: all)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once (processes; give each --threads cores): seeds of a row in parallel")
    p.add_argument("--epochs", type=int, default=None, help="cap on epochs (default: the train config's, 300)")
    p.add_argument("--llm-epochs", type=int, default=None, help="cap on the LLM rows' epochs (default: --epochs)")
    p.add_argument("--all-epochs", type=int, default=None,
                   help="cap on TALLRec k = all's epochs (default: --llm-epochs): its ML-100K epoch is "
                        "~2,500 steps of 4 units, k = 16's is 2")
    p.add_argument("--llm-eval-every", type=int, default=None,
                   help="validate the LLM rows every N epochs (and after the last): one evaluation costs minutes")
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--llm-precision", default="float32", choices=TRAIN_PRECISIONS,
                   help="the LLM rows' training precision (train.precision; evaluation stays float32); bfloat16 "
                        "needs a GPU or a CPU with AVX512-BF16/AMX (the environment's bf16_kernels)")
    p.add_argument("--probe-precisions", nargs="+", choices=TRAIN_PRECISIONS, default=None,
                   help="with --probe: measure each of these training precisions side by side (default: --llm-precision)")
    p.add_argument("--probe-strides", type=int, nargs="+", default=None,
                   help="with --probe: TALLRec k = all at each of these strides side by side "
                        "(1: one transition, its two candidates, per pass)")
    p.add_argument("--checkpoint-steps", type=int, default=50, help="LLM runs: also checkpoint every N steps")
    p.add_argument("--decode-users", type=int, default=200, help="test users for the beam-search timing")
    p.add_argument("--probe", type=int, default=0, metavar="STEPS",
                   help="only measure: training tokens/s over STEPS steps, hours per epoch, scoring ms/user, RSS")
    p.add_argument("--out", default="benchmarks/results/llm_finetune.json")
    args = p.parse_args()
    if not (0 <= args.dropout < 1 and 0 <= args.lora_dropout < 1):  # before hours of SASRec and TIGER rows
        p.error(f"--dropout and --lora-dropout must be in [0, 1), got {args.dropout} and {args.lora_dropout}")
    if args.rerank < 0:
        p.error(f"--rerank must be >= 0, got {args.rerank}")
    if min([args.stride, *(args.probe_strides or [1])]) < 1 or any(k < 0 for k in args.ks):
        p.error(f"--stride and --probe-strides must be >= 1 and --ks >= 0, got {args.stride}, {args.probe_strides} "
                f"and {args.ks}")

    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    from genrecsys.stages import llm_finetune as lf

    llm = {"llm": args.llm, "finetune": args.finetune, "lora_r": args.lora_r, "layers": args.layers}
    llmsid = {**llm, "max_len": args.max_len, "titles": args.titles,
              **{k: v for k, v in (("dropout", args.dropout), ("lora_dropout", args.lora_dropout)) if v}}
    part_rows = {"retrieval": lf.retrieval_rows("codes", llmsid, args.align, args.llm_precision),
                 "fewshot": lf.fewshot_rows(args.ks, llm, args.stride, args.llm_precision)}
    try:  # every name must match a row of the parts asked for, before hours of training
        lf.select_rows([r for part in args.parts for r in part_rows[part]], args.rows)
    except GenrecsysError as exc:
        p.error(str(exc))
    if args.llm_precision == "bfloat16":  # said now, not when the LLM rows start after hours of others
        from genrecsys.machine import warn_emulated_bf16

        warn_emulated_bf16("--llm-precision bfloat16", args.device)
    if not args.probe:  # a part none of whose rows is asked for is not run
        args.parts = [part for part in args.parts if lf.select_rows(part_rows[part], args.rows, strict=False)]

    import torch

    from genrecsys.config import ExperimentConfig, TrainConfig
    from genrecsys.experiment import load_split
    from genrecsys.stages import generative as g

    runs = Path(args.runs_dir)
    cache = Path(args.cache_dir) if args.cache_dir else None
    t0 = time.perf_counter()
    split = load_split(ExperimentConfig(), cache)
    train = TrainConfig(device=args.device, threads=args.threads, progress=False)
    if args.epochs is not None:
        train = replace(train, epochs=args.epochs)
    if args.patience is not None:
        train = replace(train, patience=args.patience)
    llm_train = replace(train, checkpoint_steps=args.checkpoint_steps, precision=args.llm_precision,
                        **({"eval_every": args.llm_eval_every} if args.llm_eval_every else {}),
                        **({"epochs": args.llm_epochs} if args.llm_epochs is not None else {}))
    out: dict = {}
    if args.probe:
        models = {}
        if "retrieval" in args.parts:
            codes = g.build_codes(split, runs, cache)
            models["llmsid"] = ("llmsid", {**llmsid, "codes": codes["rkmeans"]["dir"], "align": args.align})
        if "fewshot" in args.parts:  # k = all when the curve has it (the costly point), else its largest k
            tallrec = {**llm, "examples": 0 if 0 in args.ks else max(args.ks or [64]), "stride": args.stride}
            models.update({f"tallrec-stride{s}": ("tallrec", {**tallrec, "examples": 0, "stride": s})
                           for s in args.probe_strides} if args.probe_strides else {"tallrec": ("tallrec", tallrec)})
        wanted = list(models)
        precisions = tuple(args.probe_precisions or [args.llm_precision])
        out = lf.probe_models(split, models, args.probe, args.threads, precisions)
        for key, cost in out.items():
            print(f"{key}: {json.dumps(cost)}")
        for name in wanted if len(precisions) > 1 else []:
            first = out[name]["train_tokens_per_s"]
            print(f"{name} training tokens/s vs {precisions[0]}: " + ", ".join(
                f"{p} {out[f'{name}-{p}']['train_tokens_per_s'] / first:.2f}x" for p in precisions[1:]))
        if args.probe_strides and len(args.probe_strides) > 1:
            base = out[f"tallrec-stride{args.probe_strides[0]}"]
            print(f"TALLRec k=all, hours per epoch vs stride {args.probe_strides[0]}: " + ", ".join(
                f"stride {s} {out[f'tallrec-stride{s}']['epoch_hours'] / base['epoch_hours']:.3f}x "
                f"(tokens {out[f'tallrec-stride{s}']['tokens_per_epoch'] / base['tokens_per_epoch']:.3f}x)"
                for s in args.probe_strides[1:]))
        args.parts = []
    if "retrieval" in args.parts:
        codes = g.build_codes(split, runs, cache)
        rows = lf.select_rows(lf.retrieval_rows(codes["rkmeans"]["dir"], llmsid, args.align, args.llm_precision),
                               args.rows, strict=False)
        results = g.train_rows([r for r in rows if r.model != "llmsid"], runs, args.seeds, train, cache, args.jobs)
        results.update(g.train_rows([r for r in rows if r.model == "llmsid"], runs, args.seeds, llm_train, cache,
                                    args.jobs))
        decode = {r.label: g.decode_stats(runs / r.slug / f"seed-{train.seed}", cache, users=args.decode_users,
                                          device=args.device) for r in rows if r.model in ("tiger", "llmsid")}
        table = lf.retrieval_table(runs, rows, results, decode, codes)
        for e, r in zip(table, rows):
            if r.model == "llmsid":
                e.update(lf.llm_throughput(runs / r.slug / f"seed-{train.seed}", cache))
        out["retrieval"] = table
        print(g.markdown(table, lf.RETRIEVAL_REFERENCES))
        for e in table:
            if "train_tokens_per_s" in e:
                print(f"{e['label']}: {e['tokens_per_epoch']} tokens/epoch, {e['train_tokens_per_s']:.0f} tokens/s, "
                      f"{e['train_hours']:.2f} h (seed {train.seed})")
    if "fewshot" in args.parts:
        rows = lf.select_rows(lf.fewshot_rows(args.ks, llm, args.stride, args.llm_precision), args.rows, strict=False)
        results = lf.train_fewshot(rows, runs, args.seeds, train, llm_train, cache, args.all_epochs, args.jobs)
        table = lf.fewshot_table(runs, rows, results)
        out["fewshot"] = table
        print("\n" + lf.fewshot_markdown(table))
        if args.rerank and any(r.model == "tallrec" for r in rows):
            rerank, results = lf.rerank_fewshot(rows, runs, args.seeds, train, cache, args.rerank, args.jobs)
            out["rerank"] = lf.rerank_table(runs, rerank, results)
            print(f"\nTALLRec re-ranking SASRec's top {args.rerank} (full ranking, test users):\n"
                  + g.markdown(out["rerank"]))
    env = run_environment(device=args.device,
                          gpu=torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
                          threads=args.threads, seeds=args.seeds, wall_seconds=round(time.perf_counter() - t0),
                          peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=float))
    path.with_suffix(".env.json").write_text(json.dumps(env, indent=2))
    print(f"\nEnvironment: {json.dumps(env)}")


if __name__ == "__main__":
    try:
        main()
    except GenrecsysError as exc:  # a reused run trained otherwise, a bad input file: one line, exit 1
        raise SystemExit(f"llm_finetune.py: {exc}") from None
