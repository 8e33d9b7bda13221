"""Run one experiment: data -> split -> model -> fit -> evaluate -> run directory.

A run directory holds metrics.json, per_user.parquet (for paired tests), model.pt,
config.yaml, log.jsonl, report.md and curve.png. It appears atomically: work happens in
a hidden `.NAME.partial` sibling (which `resume=True` picks up after a crash) that is
renamed into place at the end, under a lock (`.NAME.lock`) that keeps a second process
from training into the same directory at once.

>>> from genrecsys.config import ExperimentConfig, TrainConfig
>>> cfg = ExperimentConfig(model="pop")
>>> # metrics = run_experiment(cfg, "runs/pop")
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrecsys.config import ExperimentConfig
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.files import building_file, exclusive
from genrecsys.runs import build_model, load_run, load_split  # noqa: F401  (public here too)

if TYPE_CHECKING:
    from genrecsys.reasoning.encoder import EncoderConfig


def run_experiment(cfg: ExperimentConfig, output_dir: str | Path, *, cache_dir: str | Path | None = None,
                   resume: bool = False, split: SplitData | None = None, reuse: bool = False) -> dict[str, Any]:
    """Train and evaluate one model under one seed; returns the metrics dict.

    The run holds a lock on ``output_dir`` while it trains: a second process asked for the
    same run gets ``genrecsys.files.Busy`` at once instead of wiping the first one's work
    directory. ``reuse=True``: a run already finished in ``output_dir`` (checked under the
    lock, so processes sharing a runs directory train each run once) is returned as it is.
    """
    out = Path(output_dir)
    from genrecsys.train.distributed import rank_and_world

    if rank_and_world()[0]:  # a launcher's rank > 0 (torchrun): rank 0 owns the run directory
        return _train_as_follower(cfg, out, cache_dir, resume, split)
    with exclusive(out, "training into"):
        if reuse and (out / "metrics.json").is_file():
            _refuse_other_settings(cfg, out)
            return json.loads((out / "metrics.json").read_text())
        return _train_and_publish(cfg, out, cache_dir, resume, split)


# Settings that say how a run executes, not what it learns: a run trained on a GPU, with
# other threads or step checkpoints, is reused as it is.
EXECUTION_ONLY = frozenset({"train.device", "train.threads", "train.progress", "train.checkpoint_steps",
                            "train.nproc", "train.max_seconds"})


def _refuse_other_settings(cfg: ExperimentConfig, out: Path) -> None:
    """A finished run is reused only for the settings it was trained with: the asked
    model, its parameters (the model's defaults filled in), data and training settings
    must be the run's own, else a one-line error (a benchmark's `--lora-r 32` must not
    come back as the r 8 run already in its runs directory). Evaluation settings and
    `EXECUTION_ONLY` are not compared; paths are compared by their last component, so a
    runs directory copied elsewhere is still reused."""
    from genrecsys.config import load_experiment

    if not (out / "config.yaml").is_file():
        return
    saved = load_experiment(out / "config.yaml")
    there, asked = _learned_settings(saved), _learned_settings(cfg)
    for key in sorted(set(there) | set(asked)):
        if key not in EXECUTION_ONLY and _comparable(there.get(key)) != _comparable(asked.get(key)):
            raise GenrecsysError(f"{out}: a finished run trained with other settings ({key} {there.get(key)!r} "
                                 f"there, {asked.get(key)!r} asked); give this run another directory or remove that one")


def _learned_settings(cfg: ExperimentConfig) -> dict[str, Any]:
    """Flat ``section.field`` -> value of what determines a run's weights."""
    from genrecsys.config import from_dict, to_dict
    from genrecsys.registry import MODELS

    params = to_dict(from_dict(MODELS.get(cfg.model).Config, dict(cfg.model_params), f"model_params ({cfg.model})"))
    flat: dict[str, Any] = {"model": cfg.model}
    for section, values in (("model_params", params), ("data", to_dict(cfg.data)), ("train", to_dict(cfg.train)),
                            ("reland", to_dict(cfg.reland) if cfg.reland is not None else {})):
        flat.update({f"{section}.{k}": v for k, v in values.items()})
    return flat


def _comparable(value: Any) -> Any:
    if isinstance(value, str) and "/" in value:
        return Path(value).name
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _comparable(v)) for k, v in value.items()))
    return value


def _train_as_follower(cfg: ExperimentConfig, out: Path, cache_dir: str | Path | None, resume: bool,
                       split: SplitData | None) -> dict[str, Any]:
    """A rank > 0 of a launcher's process group: the same model, seed and data as rank 0,
    its share of every step; it reads rank 0's checkpoint to resume and writes nothing."""
    from genrecsys.train.loop import fit, seed_everything

    if cfg.reland is not None:
        raise GenrecsysError("RELAND runs are not trained under torchrun yet (their side inputs are built per run)")
    split = split if split is not None else load_split(cfg, cache_dir)
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, cfg.model_params, split)
    if cfg.train.init_from:
        init_weights(model, cfg.model, cfg.train.init_from, cfg.train.seed)
    fit(model, split, cfg.train, cfg.eval, max_len=cfg.data.max_seq_len, run_dir=out.parent / f".{out.name}.partial",
        resume=resume)
    return {}


def _train_and_publish(cfg: ExperimentConfig, out: Path, cache_dir: str | Path | None, resume: bool,
                       split: SplitData | None) -> dict[str, Any]:
    import torch

    from genrecsys.eval.report import write_run_report
    from genrecsys.train.loop import evaluate, fit, protocol_of, seed_everything, selection_metric

    work = out.parent / f".{out.name}.partial"
    if work.exists() and not resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    split = split if split is not None else load_split(cfg, cache_dir)
    saved_cfg, llm_block = cfg, None
    if cfg.reland is not None:  # RELAND / "+f_item": side inputs written into the run directory
        cfg, saved_cfg, llm_block = _with_reland(cfg, split, work, cache_dir)
    seed_everything(cfg.train.seed)  # initial weights depend on the seed too
    model = build_model(cfg.model, cfg.model_params, split)
    if cfg.train.init_from and not (resume and (work / "checkpoint.pt").is_file()):
        init_weights(model, cfg.model, cfg.train.init_from, cfg.train.seed)
    max_len = cfg.data.max_seq_len
    result = fit(model, split, cfg.train, cfg.eval, max_len=max_len, run_dir=work, resume=resume)
    valid = result.best_result if result.best_result is not None else \
        evaluate(model, split, "valid", cfg.eval, max_len, cfg.train.device)
    test = evaluate(model, split, "test", cfg.eval, max_len, cfg.train.device)
    n_epochs = max(result.epochs_run, 1)
    metrics = {
        "model": cfg.model,
        "dataset": split.dataset.name,
        "protocol": _protocol(model, split, cfg),
        "selection_metric": selection_metric(cfg.train, protocol_of(model, cfg.eval)),
        "seed": cfg.train.seed,
        "test": test.metrics,
        "valid": valid.metrics,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs_run,
        "stopped_by": result.stopped_by,
        "train_seconds": result.train_seconds,
        "seconds_to_best": result.seconds_to_best,
        "seconds_per_epoch": result.train_seconds / n_epochs,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "total_seconds": time.perf_counter() - t0,
    }
    if llm_block is not None:
        metrics["llm"] = llm_block
    beyond = _beyond(model, split, cfg, test) if cfg.eval.beyond and metrics["protocol"].get("ranking") == "full" \
        else None
    if beyond is not None:
        (work / "beyond.json").write_text(json.dumps(beyond, indent=2, default=float))
    _write_per_user(work / "per_user.parquet", split, {"valid": valid, "test": test})
    torch.save({"model": cfg.model, "state_dict": model.state_dict()}, work / "model.pt")
    (work / "config.yaml").write_text(_to_yaml(saved_cfg))
    (work / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (work / "history.json").write_text(json.dumps(result.history))
    write_run_report(work, metrics, result.history, beyond=beyond)
    (work / "checkpoint.pt").unlink(missing_ok=True)
    publish(work, out)
    return metrics


def reevaluate_run(run_dir: str | Path, output_dir: str | Path, *, cache_dir: str | Path | None = None,
                   protocol: str | None = None, params: dict[str, Any] | None = None,
                   stages: tuple[str, ...] = ("test",), device: str = "cpu",
                   threads: int | None = None) -> dict[str, Any]:
    """A finished run's weights evaluated again, under another ``protocol`` and/or with
    model ``params`` that leave the weights as they are (``load_run``'s), written to
    ``output_dir`` as a run directory without weights: metrics.json (the source's training
    figures, the new ``stages``' metrics; an unevaluated stage is {}), per_user.parquet and
    config.yaml, which ``compare``, the seed tables and the paired tests read like any run's.

    E.g. a tallrec run trained and selected on impressions, scored as a re-ranker of a
    SASRec run's top 50 on full ranking: ``params={"retriever": sasrec_run}``,
    ``protocol="full"``. Reused when ``output_dir`` holds its metrics.json (under the
    directory lock, as ``run_experiment(reuse=True)``); written in one rename.
    """
    import torch

    from genrecsys.train.loop import evaluate

    out = Path(output_dir)
    with exclusive(out, "evaluating into"):
        if (out / "metrics.json").is_file():
            return json.loads((out / "metrics.json").read_text())
        if not (Path(run_dir) / "metrics.json").is_file():
            raise GenrecsysError(f"{run_dir}: not a finished run (no metrics.json; of a multi-seed run, name one "
                                 "seed-N directory)")
        source = json.loads((Path(run_dir) / "metrics.json").read_text())
        if threads:
            torch.set_num_threads(threads)
        t0 = time.perf_counter()
        cfg, split, model = load_run(run_dir, cache_dir, params)
        if protocol:
            cfg = replace(cfg, eval=replace(cfg.eval, protocol=protocol))
        model.to(device)
        results = {stage: evaluate(model, split, stage, cfg.eval, cfg.data.max_seq_len, device) for stage in stages}
        work = out.parent / f".{out.name}.partial"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        metrics = {**source, "protocol": _protocol(model, split, cfg),
                   **{stage: results[stage].metrics if stage in results else {} for stage in ("valid", "test")},
                   "evaluated_from": str(Path(run_dir).resolve()), "eval_params": dict(params or {}),
                   "eval_seconds": time.perf_counter() - t0}
        metrics.pop("total_seconds", None)
        _write_per_user(work / "per_user.parquet", split, results)
        (work / "config.yaml").write_text(_to_yaml(cfg))
        (work / "metrics.json").write_text(json.dumps(metrics, indent=2))
        publish(work, out)
        return metrics


def init_weights(model, name: str, run: str | Path, seed: int) -> list[str]:
    """Load a finished run's weights into ``model`` (train.init_from). A multi-seed run gives
    its ``seed-<seed>`` run. Every saved tensor must fit the model (same backbone); the
    model's parameters the run lacks keep their values. Returns the names of those."""
    import torch

    run = Path(run).expanduser()
    if (run / f"seed-{seed}" / "model.pt").is_file():
        run = run / f"seed-{seed}"
    if not (run / "model.pt").is_file():
        raise GenrecsysError(f"train.init_from: {run} is not a finished run (no model.pt"
                             f"{'' if not any(run.glob('seed-*')) else f', and no seed-{seed} run'})")
    saved = torch.load(run / "model.pt", map_location="cpu", weights_only=False)
    if saved.get("model") != name:
        raise GenrecsysError(f"train.init_from: {run} is a {saved.get('model')} run, this is {name}")
    own = model.state_dict()
    bad = [k for k, v in saved["state_dict"].items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise GenrecsysError(f"train.init_from: {run} has weights this {name} cannot take: {', '.join(bad[:5])}")
    missing = model.load_state_dict(saved["state_dict"], strict=False).missing_keys
    return list(missing)


def _beyond(model, split: SplitData, cfg: ExperimentConfig, test) -> dict[str, Any]:
    """Beyond-accuracy metrics and user groups of the test top-10 lists (the evaluator's
    users and masking), with the run's per-user NDCG and HR in the group tables."""
    from genrecsys.eval.holistic import holistic
    from genrecsys.train.loop import score_fn

    k = 10 if 10 in cfg.eval.ks else max(cfg.eval.ks)
    accuracy = {m: test.per_user[m] for m in (f"ndcg@{k}", f"hit@{k}") if m in test.per_user}
    ranked = (test.users, test.lists) if test.lists is not None and test.lists.shape[1] >= k else None
    return holistic(score_fn(model, cfg.train.device), split, per_user_accuracy=accuracy, k=k, max_len=cfg.data.max_seq_len,
                    mask_seen=cfg.eval.mask_seen, lists=ranked)


def _with_reland(cfg: ExperimentConfig, split: SplitData, work: Path,
                 cache_dir: str | Path | None) -> tuple[ExperimentConfig, ExperimentConfig, dict[str, Any] | None]:
    """Prepare RELAND's side inputs in ``work/reland``; returns (the config to train with:
    absolute paths, the config to save: paths relative to the run directory, the "llm" block)."""
    from genrecsys.reasoning.run import RELAND_DIR, prepare_reland

    r = cfg.reland
    llm = None
    if r.rationales and r.pool is None:
        from genrecsys.llm.client import LLM

        llm = LLM(r.llm, cache_dir, progress=cfg.train.progress)
    encoder_run = None
    if r.encoder != "lightgcn" and Path(r.encoder).expanduser().is_dir():  # a missing one: prepare_reland says so
        encoder_run = user_matrix_from_run(Path(r.encoder).expanduser(), cache_dir)
    try:
        inputs = prepare_reland(split, r, llm, cache_dir, work / RELAND_DIR, threads=cfg.train.threads,
                                encoder_run=encoder_run, train_encoder=train_behaviour_encoder)
    finally:
        if llm is not None:
            llm.close()
    # The work directory is renamed when the run finishes, so the saved config points into
    # the run directory relatively (load_run resolves it); training reads the absolute paths.
    form = {"user_fusion": r.fusion} if inputs.user_text is not None else {}  # recorded, so the run reloads as trained
    train_cfg = replace(cfg, model_params={**cfg.model_params, **inputs.model_params(), **form})
    saved = replace(cfg, model_params={**cfg.model_params, **inputs.model_params(relative_to=work.resolve()), **form})
    return train_cfg, saved, inputs.llm


def _protocol(model, split: SplitData, cfg: ExperimentConfig) -> dict[str, Any]:
    """What metrics.json's numbers were measured under."""
    from genrecsys.train.loop import protocol_of

    if protocol_of(model, cfg.eval) != "impressions":
        return {"split": split.protocol, "ranking": "full", "mask_seen": cfg.eval.mask_seen,
                "longtail_max_train": cfg.eval.longtail_max_train}
    from genrecsys.data.impressions import impressions_for

    ic = cfg.eval.impressions
    imp = impressions_for(split, "test", ic.negatives, ic.sampler, ic.seed)
    return {"split": split.protocol, "ranking": "impressions", "impressions": imp.source,
            "new_user_history": ic.new_user_history}


def publish(work: Path, out: Path) -> None:
    """Move a finished work directory into place in one rename."""
    if out.exists():
        trash = out.parent / f".{out.name}.old"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(out, trash)
        os.replace(work, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(work, out)


def _write_per_user(path: Path, split: SplitData, results: dict) -> None:
    """One row per (stage, user): every per-user array of the results, as columns. The
    long-tail slice adds a bool column `longtail` (membership) and longtail_* metric
    columns that are NaN outside the slice (see genrecsys.eval.ranking)."""
    import pandas as pd

    frames = []
    for stage, res in results.items():
        frame = pd.DataFrame({k: v for k, v in res.per_user.items()})
        frame.insert(0, "user", split.user_ids[res.users])
        frame.insert(0, "stage", stage)
        frames.append(frame)
    pd.concat(frames, ignore_index=True).to_parquet(path, index=False)


def _to_yaml(cfg: ExperimentConfig) -> str:
    import yaml

    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return yaml.safe_dump(plain(asdict(cfg)), sort_keys=False)


def run_seeds(cfg: ExperimentConfig, output_dir: str | Path, seeds: int, *, cache_dir: str | Path | None = None,
              resume: bool = False, wait_s: float = 30.0) -> dict[str, Any]:
    """Run `seeds` seeds (cfg.train.seed, +1, ...) into output_dir/seed-N and aggregate
    mean ± std into output_dir/metrics.json.

    With ``resume`` the finished seeds are kept, and a seed that another process is training
    (its lock is held) is left to it: the other seeds are trained meanwhile, then its result
    is awaited, polled every ``wait_s`` seconds (a dead holder's seed is resumed here). So
    two commands on two cores, given the same output directory, share its seeds.
    """
    import sys

    from genrecsys.eval.report import aggregate_seeds
    from genrecsys.files import Busy

    if seeds < 1:
        raise GenrecsysError(f"seeds must be at least 1, got {seeds}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[int, dict[str, Any]] = {}
    split = None

    def run(i: int) -> None:
        nonlocal split
        seed = cfg.train.seed + i
        run_cfg = replace(cfg, train=replace(cfg.train, seed=seed))
        run_dir = out / f"seed-{seed}"
        if resume and (run_dir / "metrics.json").is_file():  # before loading: a finished seed needs no data
            runs[i] = json.loads((run_dir / "metrics.json").read_text())
            return
        if split is None or cfg.data.split == "random_ratio":
            split = load_split(run_cfg, cache_dir)
        runs[i] = run_experiment(run_cfg, run_dir, cache_dir=cache_dir, resume=resume, split=split, reuse=resume)

    pending = list(range(seeds))
    while True:
        busy = []
        for i in pending:
            try:
                run(i)
            except Busy as e:
                if not resume:  # without --resume the caller asked to train it, not to wait for it
                    raise
                busy.append(i)
                print(f"seed {cfg.train.seed + i}: left to the process training it ({e}); awaited after the "
                      "other seeds", file=sys.stderr, flush=True)
        if not busy:
            break
        time.sleep(wait_s)
        pending = busy
    ordered = [runs[i] for i in range(seeds)]
    agg = aggregate_seeds(ordered)
    if "llm" in ordered[0]:  # RELAND: one pool serves every seed; the first seed's run paid for it
        agg["llm"] = ordered[0]["llm"]
    with building_file(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(agg, indent=2))
    return agg


def train_behaviour_encoder(split: SplitData, config: EncoderConfig | None = None) -> tuple[np.ndarray, Any]:
    """Fit RELAND's LightGCN behaviour encoder on ``split``; returns (M, the fit result).
    ``config`` defaults to the authors' settings (`genrecsys.reasoning.encoder.EncoderConfig`).
    Early stopping uses the split's validation targets, as any backbone's training does.
    """
    import torch

    from genrecsys.config import EvalConfig, TrainConfig
    from genrecsys.models.lightgcn import LightGCN, LightGCNConfig
    from genrecsys.reasoning.encoder import EncoderConfig, user_matrix
    from genrecsys.train.loop import fit, seed_everything

    c = config or EncoderConfig()
    seed_everything(c.seed)  # initial weights depend on the seed too
    model = LightGCN(split, LightGCNConfig(embedding_size=c.embedding_size, n_layers=c.n_layers))
    train = TrainConfig(epochs=c.epochs, patience=c.patience, lr=c.lr, batch_size=c.batch_size, seed=c.seed,
                        max_seconds=c.max_seconds, threads=c.threads, progress=c.progress)
    threads = torch.get_num_threads()
    try:
        result = fit(model, split, train, EvalConfig(ks=(10,)))
    finally:
        torch.set_num_threads(threads)  # fit() sets the process-wide count; leave it as it was
    return user_matrix(model), result


def user_matrix_from_run(run_dir: str | Path, cache_dir: str | Path | None = None) -> tuple[np.ndarray, SplitData]:
    """RELAND's behaviour matrix M from a finished run directory: (M, the run's split)."""
    from genrecsys.reasoning.encoder import user_matrix

    _, split, model = load_run(run_dir, cache_dir)
    return user_matrix(model), split


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
