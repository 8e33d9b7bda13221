"""`genrecsys` command line. Each subcommand is a thin wrapper over a typed function.

Errors the user can fix (bad file, unknown name, unknown user) print one line and exit 2.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

from genrecsys.cli.args import NON_NEGATIVE, POSITIVE, at_least
from genrecsys.config import TRAIN_PRECISIONS
from genrecsys.errors import GenrecsysError


def _cache_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "cache_dir", None):
        return Path(args.cache_dir)
    env = os.environ.get("GENRECSYS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "genrecsys"


# ----------------------------------------------------------------------------- data
def cmd_data_prepare(args: argparse.Namespace) -> int:
    from genrecsys.config import DataConfig
    from genrecsys.data.load import prepare
    from genrecsys.data.stats import dataset_stats, format_stats_table

    cfg = DataConfig(dataset=args.dataset, path=args.path, implicit_threshold=args.implicit_threshold,
                     min_user_interactions=args.min_user, min_item_interactions=args.min_item)
    ds = prepare(cfg, _cache_dir(args))
    if args.output:
        ds.save(args.output)
    print(format_stats_table({ds.name: dataset_stats(ds)}), end="")
    if ds.impressions is not None:  # MIND format: GENRE Table 1 statistics
        from genrecsys.data.itemtext import load_tokenizer
        from genrecsys.data.mind import format_mind_stats, mind_stats

        print()
        print(format_mind_stats(mind_stats(ds, load_tokenizer(args.tokenizer, _cache_dir(args)))), end="")
    if args.output:
        print(args.output)
    return 0


# ----------------------------------------------------------------------------- train
def _experiment_config(args: argparse.Namespace):
    from dataclasses import replace

    from genrecsys.config import ExperimentConfig, from_dict, load_yaml

    raw = load_yaml(args.config) if args.config else {}
    cfg = from_dict(ExperimentConfig, raw, str(args.config or "config"))
    if args.model:
        cfg = replace(cfg, model=args.model)
    data_over = {k: v for k, v in {"dataset": args.dataset, "path": args.data_path, "split": args.split}.items() if v is not None}
    train_over = {k: v for k, v in {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                                    "weight_decay": args.weight_decay, "patience": args.patience,
                                    "eval_every": args.eval_every,
                                    "seed": args.seed, "threads": args.threads, "device": args.device,
                                    "max_seconds": args.max_seconds,
                                    "pretrain_epochs": args.pretrain_epochs, "lr_schedule": args.lr_schedule,
                                    "warmup_steps": args.warmup_steps, "nproc": args.nproc,
                                    "checkpoint_steps": args.checkpoint_steps, "precision": args.precision,
                                    "init_from": args.init_from}.items() if v is not None}
    if args.no_progress:
        train_over["progress"] = False
    model_params = _with_params(cfg.model_params, args.param)
    eval_over = {"mask_seen": False} if args.no_mask_seen else {}
    if args.protocol:
        eval_over["protocol"] = args.protocol
    return replace(cfg, data=from_dict(type(cfg.data), {**_fields(cfg.data), **data_over}, "data"),
                   train=from_dict(type(cfg.train), {**_fields(cfg.train), **train_over}, "train"),
                   eval=from_dict(type(cfg.eval), {**_fields(cfg.eval), **eval_over}, "eval"),
                   model_params=model_params, reland=_reland_config(args, cfg.reland))


def _with_params(params: dict[str, Any], items: list[str] | None) -> dict[str, Any]:
    """``params`` updated by ``--param KEY=VALUE`` items (a dotted key sets a nested one)."""
    out = dict(params)
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise GenrecsysError(f"--param expects key=value, got {item!r}")
        *outer, last = key.split(".")  # llm.dtype=bfloat16 -> {"llm": {"dtype": "bfloat16"}}
        node = out
        for part in outer:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[last] = _parse_value(value)
    return out


# flag -> RelandConfig key (the LLM's are genrecsys.cli.llm.LLM_FLAGS, named --llm-*)
_RELAND_FLAGS = {"seed_fraction": "seed_fraction", "clusters": "clusters", "seed_sampling": "sampling",
                 "prompt": "prompt", "encoder": "encoder", "encoder_epochs": "encoder_epochs",
                 "reland_pool": "pool", "retrieval": "retrieval", "text_encoder": "text_encoder", "fusion": "fusion",
                 "reland_max_tokens": "max_tokens", "fresh_items": "fresh_items"}


def _reland_config(args: argparse.Namespace, current):
    """RelandConfig from the YAML's ``reland:`` section and the RELAND flags; None = an ID-only run."""
    from genrecsys.config import RelandConfig, from_dict, to_dict

    if current is None and not (args.reland or args.item_features):
        from genrecsys.cli.llm import llm_flag_dests

        used = [f"--{k.replace('_', '-')}" for k in (*_RELAND_FLAGS, *llm_flag_dests("llm-"))
                if getattr(args, k) is not None]
        if used:
            raise GenrecsysError(f"{', '.join(used)} need(s) --reland or --item-features")
        return None
    raw = to_dict(current) if current is not None else {}
    if current is None and not args.reland:
        raw["rationales"] = False  # --item-features alone: the "+f_item" variant, no LLM
    if args.item_features:
        raw["item_features"] = True
    raw.update({key: getattr(args, flag) for flag, key in _RELAND_FLAGS.items() if getattr(args, flag) is not None})
    raw["llm"] = _llm_settings(args, raw.get("llm", {}))
    return from_dict(RelandConfig, raw, "reland")


def _llm_settings(args: argparse.Namespace, llm: dict) -> dict:
    """LLM settings: ``llm`` (e.g. a YAML section), then --llm-config, then the --llm-* flags."""
    from genrecsys.cli.llm import llm_settings

    return llm_settings(args, "llm-", llm)


def _fields(obj) -> dict:
    import dataclasses

    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def cmd_train(args: argparse.Namespace) -> int:
    from genrecsys.experiment import run_experiment, run_seeds
    from genrecsys.registry import MODELS
    from genrecsys.train.distributed import join_launcher_group, leave_launcher_group, rank_and_world

    cfg = _experiment_config(args)
    MODELS.get(cfg.model)  # fail fast on an unknown name
    out = Path(args.output_dir or f"runs/{cfg.model}-{cfg.data.dataset.replace('/', '_')}")
    if join_launcher_group(cfg.train.device):  # started by torchrun: this process is one rank
        rank, ok = rank_and_world()[0], False
        try:
            if cfg.train.nproc > 1 or args.seeds > 1:
                raise GenrecsysError("under torchrun, torchrun starts the ranks: drop --nproc, "
                                     "and run one seed per launch")
            metrics = run_experiment(cfg, out, cache_dir=_cache_dir(args), resume=args.resume)
            ok = True
        finally:
            leave_launcher_group(ok)
        if rank:
            return 0  # rank 0 reports and writes the run directory
        std = {}
    elif args.seeds > 1:
        metrics = run_seeds(cfg, out, args.seeds, cache_dir=_cache_dir(args), resume=args.resume)
        std = metrics["test_std"]
    else:
        metrics = run_experiment(cfg, out, cache_dir=_cache_dir(args), resume=args.resume)
        std = {}
    t = metrics["test"]
    shown = [k for k in ("hit@10", "ndcg@10", "mrr@10", "auc", "mrr", "ndcg@5", "longtail_ndcg@10") if k in t]
    print(" ".join(f"test {k}={t[k]:.4f}" + (f"±{std[k]:.4f}" if k in std else "") for k in shown),
          file=sys.stderr)
    print(out)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from genrecsys.registry import MODELS
    from genrecsys.stages.tune import load_space, run_tune, tune_report

    cfg = _experiment_config(args)
    MODELS.get(cfg.model)  # fail fast on an unknown name
    space = load_space(args.space, cfg)
    out = Path(args.output_dir or f"tune/{cfg.model}-{cfg.data.dataset.replace('/', '_')}")
    summary = run_tune(cfg, space, out, trials=args.trials, concurrent=args.concurrent, seed=args.search_seed,
                       cache_dir=_cache_dir(args), address=args.ray_address)
    print(tune_report(summary), file=sys.stderr)
    print(out)
    return 0


def _print_holistic(name: str, res: dict) -> None:
    from genrecsys.eval.report import markdown_table

    s = res["summary"]
    seeds = f", mean of {res['seeds']} seeds" if res.get("seeds", 1) > 1 else ""
    print(f"## {name}: beyond accuracy (top-{res['k']}, {res['users']} test users{seeds})\n")
    print(markdown_table(["metric", "value"], [[m, f"{v:.4f}"] for m, v in s.items()]))
    metric = next((m for m in (f"ndcg@{res['k']}", "novelty") if m in next(iter(res["groups"].values()), {})), None)
    for grouping, table in res["groups"].items():
        row = table.get(metric)
        if row is None:
            continue
        groups = [g for g in row if g not in ("gap", "p")]
        print(f"\n{metric} by {grouping}: " + ", ".join(f"{g} {row[g]:.4f}" for g in groups)
              + f"; gap {row['gap']:.4f}" + (f" (Kruskal–Wallis p {row['p']:.2g})" if math.isfinite(row["p"]) else ""))
    print()


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.beyond:
        from genrecsys.stages.holistic import run_holistic

        res = run_holistic(args.run, _cache_dir(args), (args.k or [10])[0], all_seeds=args.all_seeds)
        if args.json:
            print(json.dumps(res, indent=2, default=float))
        else:
            _print_holistic(args.run, res)
        return 0
    params = _with_params({}, args.param)
    if args.output_dir:  # a run directory of its own (no weights): `compare` and the seed tables read it
        from genrecsys.experiment import reevaluate_run

        if args.sampled or args.k or args.no_mask_seen:
            raise GenrecsysError("evaluate --output-dir writes the run's own metrics: drop --sampled, -k and "
                                 "--no-mask-seen")
        metrics = reevaluate_run(args.run, args.output_dir, cache_dir=_cache_dir(args), protocol=args.protocol,
                                 params=params, stages=tuple(args.stage))
        print(json.dumps({stage: metrics[stage] for stage in args.stage}, indent=2))
        print(args.output_dir)
        return 0
    from genrecsys.config import EvalConfig
    from genrecsys.experiment import load_run
    from genrecsys.train.loop import evaluate

    cfg, split, model = load_run(args.run, _cache_dir(args), params)
    eval_cfg = EvalConfig(ks=tuple(args.k) if args.k else cfg.eval.ks, mask_seen=not args.no_mask_seen,
                          protocol=args.protocol or cfg.eval.protocol, impressions=cfg.eval.impressions,
                          longtail_max_train=cfg.eval.longtail_max_train)
    result = {}
    for stage in args.stage:
        result[stage] = evaluate(model, split, stage, eval_cfg, cfg.data.max_seq_len).metrics
    if args.sampled:
        from genrecsys.eval.sampled import evaluate_sampled
        from genrecsys.train.loop import score_fn

        for stage in args.stage:
            result[f"{stage}_sampled100"] = evaluate_sampled(score_fn(model), split, stage, eval_cfg.ks,
                                                             max_len=cfg.data.max_seq_len).metrics
    print(json.dumps(result, indent=2))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from genrecsys.eval.compare import compare_runs, format_comparison

    if args.beyond:
        from genrecsys.stages.holistic import run_holistic

        results = {run: run_holistic(run, _cache_dir(args), 10) for run in (args.run_a, args.run_b)}
        if args.json:
            print(json.dumps(results, indent=2, default=float))
            return 0
        from genrecsys.eval.report import markdown_table

        names = list(results)
        metrics = list(results[names[0]]["summary"])
        print(markdown_table(["metric", *names], [[m, *(f"{results[n]['summary'].get(m, float('nan')):.4f}"
                                                          for n in names)] for m in metrics]))
        return 0

    res = compare_runs(Path(args.run_a), Path(args.run_b), stage=args.stage, metrics=tuple(args.metric),
                       seeds=args.seeds)
    print(format_comparison(res), end="")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from genrecsys.experiment import load_run
    from genrecsys.reasoning.run import explanations
    from genrecsys.serve.recommend import recommend

    cfg, split, model = load_run(args.run, _cache_dir(args))
    recs = recommend(model, split, args.user, k=args.k, exclude_seen=not args.include_seen, max_len=cfg.data.max_seq_len)
    why = explanations(args.run, [r.user for r in recs], redact_leaks=split if args.redact_leaks else None)
    if args.json:
        rows = [r.__dict__ if why is None else {**r.__dict__, "explanation": why.get(r.user)} for r in recs]
        print(json.dumps(rows, indent=2))
        return 0
    for rec in recs:
        print(f"user {rec.user}: top-{len(rec.items)}")
        if why is not None and rec.user in why:
            e = why[rec.user]
            print(f"  why (LLM rationale of seed user {e['seed_user']}, similarity {e['similarity']:.3f}): "
                  f"{e['rationale']}")
        for rank, (item, score, title) in enumerate(zip(rec.items, rec.scores, rec.titles), start=1):
            print(f"  {rank:>2}. {item:>8}  {score:8.4f}  {title}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from genrecsys.registry import MODELS

    print("\n".join(MODELS.names()))
    return 0


def cmd_main(args: argparse.Namespace) -> int:
    from genrecsys.config import LLMConfig, from_dict
    from genrecsys.pipeline import MainJobConfig, run_main_job

    cfg = MainJobConfig(quick=args.quick, seeds=args.seeds, models=tuple(args.models) if args.models else None,
                        threads=args.threads, progress=not args.no_progress,
                        reland=not args.skip_reland, beyond=not args.skip_beyond,
                        reland_seed_fraction=args.reland_seed_fraction,
                        reland_max_tokens=args.reland_max_tokens, genre=not args.skip_genre,
                        genre_limit=args.genre_limit, llm=from_dict(LLMConfig, _llm_settings(args, {}), "llm"))
    report = run_main_job(cfg, Path(args.output_dir), cache_dir=_cache_dir(args))
    print(report)
    return 0


# ----------------------------------------------------------------------------- parser
def _experiment_flags(sp: argparse.ArgumentParser) -> None:
    """What defines one experiment: shared by train and tune."""
    sp.add_argument("--model", help="model name (see `genrecsys models`)")
    sp.add_argument("--dataset", help="ml-100k or a dataset directory")
    sp.add_argument("--data-path", help="local copy of the dataset files")
    sp.add_argument("--split", choices=["loo", "ratio", "random_ratio", "impressions"],
                    help="impressions: along the dataset's logged impressions (MIND)")
    sp.add_argument("--protocol", choices=["full", "impressions"],
                    help="evaluation: full ranking or AUC/MRR/nDCG per impression (default: the model's own; "
                         "news/CTR models use impressions)")
    sp.add_argument("--config", help="YAML experiment file (keys: model, model_params, data, train, eval)")
    sp.add_argument("--param", action="append", metavar="KEY=VALUE",
                    help="model hyper-parameter (repeatable); a dotted key sets a nested one, e.g. llm.dtype=bfloat16")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--epochs", type=at_least(1))
    sp.add_argument("--lr", type=POSITIVE)
    sp.add_argument("--batch-size", type=at_least(1))
    sp.add_argument("--weight-decay", type=NON_NEGATIVE)
    sp.add_argument("--patience", type=at_least(1))
    sp.add_argument("--eval-every", type=at_least(1), metavar="N",
                    help="validate every N epochs (and after the last): an LLM model's evaluation costs minutes "
                         "(default 1)")
    sp.add_argument("--threads", type=at_least(1))
    sp.add_argument("--device", help="cpu or cuda")
    sp.add_argument("--max-seconds", type=POSITIVE, help="wall-clock guard on training")
    sp.add_argument("--lr-schedule", choices=["constant", "cosine", "linear"],
                    help="learning rate decayed to 0 at --epochs (default constant)")
    sp.add_argument("--warmup-steps", type=at_least(0), help="linear learning-rate warm-up over the first steps")
    sp.add_argument("--checkpoint-steps", type=at_least(0), metavar="N",
                    help="also checkpoint every N steps inside an epoch: a killed run resumes mid-epoch (--resume) "
                         "with the same result (default: at epoch ends)")
    sp.add_argument("--precision", choices=TRAIN_PRECISIONS,
                    help="bfloat16: train under bfloat16 autocast (a GPU, or a CPU with AVX512-BF16/AMX: "
                         "llmsid trains ~1.8x faster; a CPU without them emulates it, ~25x slower, and a warning "
                         "says so); evaluation stays float32 (default float32)")
    sp.add_argument("--nproc", type=at_least(1),
                    help="data-parallel training processes on this machine (PyTorch DDP: gloo on CPU, one GPU each "
                         "with --device cuda); the global batch stays --batch-size")
    sp.add_argument("--init-from", metavar="RUN",
                    help="warm start from a finished run's weights (a multi-seed run: the same seed's); its layers "
                         "this model lacks are an error, this model's extra layers (a RELAND fusion) start fresh; "
                         "the start is validated first and kept unless training beats it on validation")
    sp.add_argument("--pretrain-epochs", type=at_least(0),
                    help="epochs of the model's pretraining objective before training (GenRec: cloze)")
    sp.add_argument("--no-mask-seen", action="store_true", help="do not mask already-seen items at evaluation")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genrecsys", description="Generative recommender systems toolkit.")
    p.add_argument("--cache-dir", help="where datasets are cached (default: $GENRECSYS_CACHE or ~/.cache/genrecsys)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable, help: str, parent=sub) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    data = sub.add_parser("data", help="prepare datasets and show their statistics")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    sp = add("prepare", cmd_data_prepare, "load (download offline if needed), filter, cache, print statistics", dsub)
    sp.add_argument("dataset", help="registered name (ml-100k) or a dataset directory")
    sp.add_argument("--path", help="local copy of the dataset files")
    sp.add_argument("--implicit-threshold", type=float, help="keep ratings >= this value")
    sp.add_argument("--min-user", type=at_least(0), default=0, help="k-core: minimum interactions per user")
    sp.add_argument("--min-item", type=at_least(0), default=0, help="k-core: minimum interactions per item")
    sp.add_argument("--output", help="also save the prepared dataset (Parquet) to this directory")
    sp.add_argument("--tokenizer", help="MIND: Hugging Face tokenizer dir for tokens per title/abstract "
                                        "(default: the embedded all-MiniLM-L6-v2 WordPiece)")

    sp = add("train", cmd_train, "train and evaluate a model; prints the run directory last")
    _experiment_flags(sp)
    sp.add_argument("--seeds", type=at_least(1), default=1, help="number of seeds; >1 writes seed-N subdirs and mean ± std")
    sp.add_argument("--resume", action="store_true",
                    help="continue an interrupted run from its checkpoint, keep finished seeds, and await a seed "
                         "that another process is training (two commands can share one --output-dir)")
    sp.add_argument("--no-progress", action="store_true")
    sp.add_argument("--output-dir", help="run directory (default runs/MODEL-DATASET)")
    _add_reland_flags(sp)

    sp = add("tune", cmd_tune, "hyper-parameter search on Ray Tune: trials are normal runs, selection on validation only")
    _experiment_flags(sp)
    sp.add_argument("--space", required=True,
                    help="YAML search space: dotted field -> {choice|uniform|loguniform|randint: [...]}")
    sp.add_argument("--trials", type=at_least(1), default=12, help="random samples of the space (default 12)")
    sp.add_argument("--concurrent", type=at_least(1), default=2, help="trials at a time (default 2)")
    sp.add_argument("--search-seed", type=int, default=0, help="seed of the sampler (default 0)")
    sp.add_argument("--ray-address", help="Ray cluster to spread trials over (\"auto\"); default: a local Ray")
    sp.add_argument("--output-dir", help="tune directory (default tune/MODEL-DATASET); run again to continue a killed tune")
    sp.add_argument("--no-progress", action="store_true")
    _add_reland_flags(sp)

    sp = add("evaluate", cmd_evaluate, "re-evaluate a finished run (full ranking; --sampled adds the 100-negative protocol)")
    sp.add_argument("run")
    sp.add_argument("--stage", nargs="+", default=["test"], choices=["valid", "test"])
    sp.add_argument("-k", type=at_least(1), nargs="+")
    sp.add_argument("--no-mask-seen", action="store_true")
    sp.add_argument("--sampled", action="store_true", help="also report the sampled protocol (labelled as such)")
    sp.add_argument("--beyond", action="store_true",
                    help="beyond-accuracy metrics (coverage, Gini, novelty, ILD, popularity lift, long-tail share, "
                         "calibration) and every metric per user group (gender, age, occupation, activity, new/warm)")
    sp.add_argument("--json", action="store_true", help="with --beyond: one JSON object instead of tables")
    sp.add_argument("--all-seeds", action="store_true",
                    help="with --beyond on a multi-seed run directory (seed-N/): the mean over its seeds "
                         "(default: the first seed)")
    sp.add_argument("--protocol", choices=["full", "impressions"], help="default: the run's")
    sp.add_argument("--param", action="append", metavar="KEY=VALUE",
                    help="a model parameter that keeps the weights (repeatable), e.g. a tallrec run re-ranking "
                         "another run's top items: --protocol full --param retriever=RUN --param candidates=50")
    sp.add_argument("--output-dir", help="also write the evaluation as a run directory without weights "
                                         "(metrics.json, per_user.parquet, config.yaml) for `compare`")

    sp = add("compare", cmd_compare, "paired t-test and Wilcoxon test between two runs, per user "
                                     "(multi-seed runs: each user's mean over the seeds both runs have)")
    sp.add_argument("run_a")
    sp.add_argument("run_b")
    sp.add_argument("--stage", default="test", choices=["valid", "test"])
    sp.add_argument("--metric", nargs="+", default=["ndcg@10", "hit@10", "mrr@10"])
    sp.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                    help="multi-seed runs: pair on these seeds only (numbers, e.g. 2020 2021; default: every "
                         "seed both runs have)")
    sp.add_argument("--beyond", action="store_true", help="beyond-accuracy metrics of both runs side by side")
    sp.add_argument("--json", action="store_true", help="with --beyond: one JSON object")

    sp = add("recommend", cmd_recommend, "top-K unseen items (with titles) for users of a finished run")
    sp.add_argument("run")
    sp.add_argument("--user", nargs="+", required=True, help="raw user id(s)")
    sp.add_argument("-k", type=at_least(1), default=10)
    sp.add_argument("--include-seen", action="store_true")
    sp.add_argument("--redact-leaks", action="store_true",
                    help="RELAND runs: remove items of the seed user's history that this user never had from the "
                         "explanation (see `genrecsys audit`)")
    sp.add_argument("--json", action="store_true")

    add("models", cmd_models, "list registered models")

    from genrecsys.cli.llm import add_llm_parser

    add_llm_parser(sub, _cache_dir)

    from genrecsys.cli.augment import add_augment_parser

    add_augment_parser(sub, _cache_dir)

    from genrecsys.cli.semantic_ids import add_semantic_ids_parser

    add_semantic_ids_parser(sub, _cache_dir)

    from genrecsys.cli.serve import add_serve_parsers

    add_serve_parsers(sub, _cache_dir)

    from genrecsys.cli.audit import add_audit_parser

    add_audit_parser(sub, _cache_dir)

    sp = add("main", cmd_main, "the main job: prepare ML-100K, train every backbone and GenRec, then the RELAND and "
                               "GENRE stages (LLM: the embedded SmolLM2 unless told otherwise), write one report")
    sp.add_argument("--quick", action="store_true",
                    help="a few minutes: fewer epochs, one seed, a 2%% RELAND seed budget, 6 GENRE rows per step")
    sp.add_argument("--seeds", type=at_least(1), default=None, help="seeds per model (default 1 with --quick, else 5)")
    sp.add_argument("--models", nargs="+", help="subset of backbone models (the stages pick their own)")
    sp.add_argument("--threads", type=at_least(1), default=None)
    sp.add_argument("--no-progress", action="store_true")
    sp.add_argument("--output-dir", default="outputs/main")
    g = sp.add_argument_group("stages")
    g.add_argument("--skip-beyond", action="store_true",
                   help="no beyond-accuracy section (coverage, novelty, diversity, popularity, user groups)")
    g.add_argument("--skip-reland", action="store_true", help="no RELAND stage (SASRec/LightGCN ID-only vs +RELAND)")
    g.add_argument("--skip-genre", action="store_true",
                   help="no GENRE stage; without --quick it augments every item and user, hours with SmolLM2 on a CPU")
    g.add_argument("--reland-seed-fraction", type=_parse_value,
                   help="RELAND seed users: a fraction or a count (default 0.02 with --quick, else 0.1)")
    g.add_argument("--reland-max-tokens", type=at_least(1), help="RELAND answer budget per seed (default 128 with 3 items quick, else 256 with 10)")
    g.add_argument("--genre-limit", type=at_least(1), help="GENRE LLM rows per augmentation step (default 6 quick, else all)")
    _add_llm_flags(sp.add_argument_group("LLM of the stages (default: the embedded local SmolLM2-135M)"))
    return p


def _add_reland_flags(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("RELAND (LLM reasoning pool + retrieval; the run keeps pool/ and assignment in reland/)")
    g.add_argument("--reland", action="store_true",
                   help="fuse each user's retrieved LLM rationale (Step 2 text) into the backbone")
    g.add_argument("--item-features", action="store_true",
                   help="feed item text (title + genres) to the backbone; alone: the '+f_item' variant, no LLM")
    g.add_argument("--seed-fraction", type=_parse_value, help="seed users: 0.1 = 10%% of users (default), 50 = fifty")
    g.add_argument("--clusters", type=_parse_value, help="K-means clusters: 0.05 = 5%% of users (default) or a count")
    g.add_argument("--seed-sampling", choices=["adaptive", "random"], help="default adaptive")
    g.add_argument("--prompt", choices=["cot", "direct"], help="cot (default: Step 1 summary, Step 2 items) or direct")
    g.add_argument("--encoder", help="behaviour encoder: lightgcn (default, cached) or a finished run directory")
    g.add_argument("--encoder-epochs", type=at_least(1), help="LightGCN encoder epochs (default 300, patience 10)")
    g.add_argument("--reland-pool", help="reuse a saved reasoning pool directory instead of asking the LLM")
    g.add_argument("--retrieval", choices=["auto", "exact", "faiss"], help="nearest-seed search (default auto)")
    g.add_argument("--fusion", choices=["gated", "attention"],
                   help="gated (default: a residual gate from zero, starts as the ID-only model) or attention "
                        "(the paper's Eq. 5)")
    g.add_argument("--text-encoder", help="sentence-transformers directory (default: the embedded MiniLM)")
    g.add_argument("--reland-max-tokens", type=at_least(1), help="answer budget per seed (default 256)")
    g.add_argument("--fresh-items", action="store_const", const=True, default=None,
                   help="Step 2 may only name items outside the seed's own history (no leaked history in served "
                        "explanations; pair with --llm-grammar-engine llguidance: one grammar per seed)")
    _add_llm_flags(g)


def _add_llm_flags(g) -> None:
    """The --llm-* flags (prefixed: `train --model` and `main --threads` mean other things)."""
    from genrecsys.cli.llm import add_llm_flags

    add_llm_flags(g, prefix="llm-")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except GenrecsysError as exc:
        print(f"genrecsys: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genrecsys: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
