"""The training loop: early stopping on a validation metric, best-checkpoint restore,
deterministic seeds, progress bar, JSON-lines log, resume from checkpoint.

>>> # fit(model, split, TrainConfig(epochs=5), EvalConfig())   # see genrecsys.experiment
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrecsys.config import EvalConfig, TrainConfig
from genrecsys.data.splits import SplitData
from genrecsys.eval.ranking import RankingResult, evaluate_ranking
from genrecsys.files import building_file
from genrecsys.machine import warn_emulated_bf16
from genrecsys.models.base import Recommender


@dataclass
class FitResult:
    best_epoch: int  # 0-based epoch of the restored weights; -1 when never validated
    epochs_run: int
    best_valid: dict[str, float]
    train_seconds: float  # wall time of the whole fit (training + validation)
    seconds_to_best: float  # wall time when the best checkpoint was reached
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str = "epochs"  # epochs | early_stopping | max_seconds
    pretrain_epochs: int = 0  # leading epochs spent on the model's pretraining objective (no validation)
    # the validation of the restored weights, per user too: the run's valid figures without
    # evaluating again (one exact pass of an LLM model over the users costs minutes); None
    # when not kept (resumed from a checkpoint written before it was)
    best_result: Any = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def score_fn(model: Recommender, device: str = "cpu"):
    def fn(users: np.ndarray, seqs: np.ndarray) -> torch.Tensor:
        u = torch.as_tensor(users, dtype=torch.long, device=device)
        s = torch.as_tensor(seqs, dtype=torch.long, device=device)
        return model.score(u, s).float().cpu()
    return fn


def candidate_score_fn(model: Recommender, device: str = "cpu"):
    def fn(users: np.ndarray, seqs: np.ndarray, candidates: np.ndarray) -> torch.Tensor:
        u, s, c = (torch.as_tensor(x, dtype=torch.long, device=device) for x in (users, seqs, candidates))
        return model.score_candidates(u, s, c).float().cpu()
    return fn


def protocol_of(model: Recommender, eval_cfg: EvalConfig) -> str:
    """The evaluation protocol: the eval config's, else the model's own."""
    return eval_cfg.protocol or getattr(model, "protocol", "full")


def selection_metric(train_cfg: TrainConfig, protocol: str) -> str:
    """Validation metric for early stopping: train.metric, else NDCG@10 under full
    ranking and AUC under the impression protocol (MIND's and GENRE's headline metric,
    and smoother than nDCG@10 over one impression per user)."""
    return train_cfg.metric or ("auc" if protocol == "impressions" else "ndcg@10")


def evaluate(model: Recommender, split: SplitData, stage: str, eval_cfg: EvalConfig, max_len: int = 50,
             device: str = "cpu") -> RankingResult:
    model.eval()
    model.on_eval_start()
    if protocol_of(model, eval_cfg) == "impressions":
        from genrecsys.data.impressions import impressions_for
        from genrecsys.eval.impressions import evaluate_impressions

        ic = eval_cfg.impressions
        imp = impressions_for(split, stage, ic.negatives, ic.sampler, ic.seed)
        return evaluate_impressions(candidate_score_fn(model, device), split, stage, imp, max_len=max_len,
                                    batch_impressions=ic.batch_impressions, new_user_history=ic.new_user_history)
    return evaluate_ranking(score_fn(model, device), split, stage, tuple(eval_cfg.ks),
                            mask_seen=eval_cfg.mask_seen, max_len=max_len, batch_users=eval_cfg.batch_users,
                            longtail_max_train=eval_cfg.longtail_max_train)


def fit(model: Recommender, split: SplitData, train_cfg: TrainConfig, eval_cfg: EvalConfig, *,
        max_len: int = 50, run_dir: str | Path | None = None, resume: bool = False) -> FitResult:
    """Train `model` in place and leave it holding its best-validation weights.

    With ``train_cfg.nproc > 1`` the training runs data-parallel in that many processes
    (``genrecsys.train.distributed``); inside a process group this is one rank's part."""
    from genrecsys.train import distributed as ddp

    rank, world = ddp.rank_and_world()
    if train_cfg.nproc > 1 and world == 1 and model.trainable and train_cfg.epochs > 0:
        return ddp.spawn_fit(fit, model, split, train_cfg, eval_cfg, max_len=max_len, run_dir=run_dir, resume=resume)
    seed_everything(train_cfg.seed)
    if world > 1:
        torch.manual_seed(train_cfg.seed + rank)  # own dropout masks per rank; DDP syncs the weights
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    if train_cfg.precision == "bfloat16":
        warn_emulated_bf16("train.precision bfloat16", train_cfg.device)
    device = f"cuda:{rank}" if world > 1 and train_cfg.device.startswith("cuda") else train_cfg.device
    model.to(device)
    run_path = Path(run_dir) if run_dir else None
    log = _JsonLog(run_path / "log.jsonl" if run_path and rank == 0 else None)
    start = time.perf_counter()

    if not model.trainable or train_cfg.epochs == 0:
        model.fit_closed_form(split)
        valid = evaluate(model, split, "valid", eval_cfg, max_len, device)
        elapsed = time.perf_counter() - start
        log.write({"epoch": 0, "valid": valid.metrics, "seconds": elapsed})
        return FitResult(0, 1 if not model.trainable else 0, valid.metrics, elapsed, elapsed,
                         [{"epoch": 0, "loss": None, "valid": valid.metrics}], best_result=valid)

    lr = train_cfg.lr if train_cfg.lr is not None else model.default_lr
    wd = train_cfg.weight_decay if train_cfg.weight_decay is not None else model.default_weight_decay
    batch_size = train_cfg.batch_size or model.default_batch_size
    if world > 1:  # the same global batch: every rank takes its share of each step
        if batch_size < world:
            from genrecsys.errors import GenrecsysError

            raise GenrecsysError(f"batch size {batch_size} is smaller than train.nproc={world}")
        batch_size //= world
    loss_of = ddp.wrap(model, device) if world > 1 else model.loss
    pretrain = _pretrain_epochs(model, train_cfg)
    optim = model.make_optimizer(lr, wd)
    base_lrs = [g["lr"] for g in optim.param_groups]
    metric = selection_metric(train_cfg, protocol_of(model, eval_cfg))
    rng = np.random.default_rng(train_cfg.seed)
    resume_torch_rng = None
    state = {"epoch": 0, "best_score": -np.inf, "best_epoch": -1, "bad_rounds": 0, "history": [],
             "best_state": None, "best_valid": {}, "elapsed_before": 0.0, "seconds_to_best": 0.0, "step": 0}
    ckpt = run_path / "checkpoint.pt" if run_path else None
    if resume and ckpt is not None and ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)  # resumable on another device
        model.load_state_dict(saved["model"])
        optim.load_state_dict(saved["optim"])
        rng.bit_generator.state = saved["rng"]
        ranks = saved.get("torch_rng_ranks")
        if world > 1 and (ranks is None or len(ranks) != world):
            from genrecsys.errors import GenrecsysError

            raise GenrecsysError(f"{ckpt}: saved by {len(ranks) if ranks else 1} process(es); resume with the same train.nproc")
        torch.set_rng_state(ranks[rank] if world > 1 else saved["torch_rng"])
        if saved.get("cuda_rng") and torch.cuda.is_available() and len(saved["cuda_rng"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])  # GPU dropout masks continue where they stopped
        state = saved["state"]
        resume_torch_rng = saved["torch_rng"] if world == 1 else None
    if train_cfg.init_from and state["epoch"] == 0 and rank == 0 and not pretrain:
        # A warm start is the first candidate: an epoch must beat it on validation to be
        # selected, so the run ends no worse than its start on validation (best_epoch -1).
        valid = evaluate(model, split, "valid", eval_cfg, max_len, device)
        state.update(best_score=valid.metrics[metric], best_epoch=-1, best_valid=valid.metrics, best_result=valid,
                     best_state=copy.deepcopy(model.state_dict()))
    stopped_by = "epochs"
    bar = _progress(train_cfg, state["epoch"], pretrain, disable=rank != 0)
    epoch = state["epoch"]
    for epoch in range(state["epoch"], pretrain + train_cfg.epochs):
        phase = "pretrain" if epoch < pretrain else "finetune"
        if pretrain:
            model.set_phase(phase)  # type: ignore[attr-defined]
        model.train()
        model.on_train_start()
        t0 = time.perf_counter()
        total, n = 0.0, 0
        scheduled = train_cfg.lr_schedule != "constant" or train_cfg.warmup_steps
        done = state.get("epoch_step", 0)  # > 0: resumed from a checkpoint taken inside this epoch
        if done:
            rng.bit_generator.state = state["epoch_rng"]
        epoch_rng = copy.deepcopy(rng.bit_generator.state)
        batches = iter(model.batches(split, batch_size, rng))
        if done:  # replay the epoch's first batches (the same draws), then continue where it stopped
            for _ in range(done):
                next(batches)
            torch.set_rng_state(resume_torch_rng)
            total, n = state["epoch_total"], state["epoch_n"]
            t0 -= state["epoch_seconds"]
        for batch in ddp.rank_batches(batches, rank, world) if world > 1 else batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            with training_precision(train_cfg.precision, device):
                loss = loss_of(batch)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if scheduled:  # a pure function of (epoch, step): a resumed run continues the same curve
                f = lr_factor(train_cfg, epoch - pretrain, state.get("step", 0))
                for g, base in zip(optim.param_groups, base_lrs):
                    g["lr"] = base * f
            optim.step()
            state["step"] = state.get("step", 0) + 1
            total += float(loss.detach())
            n += 1
            if train_cfg.checkpoint_steps and ckpt is not None and n % train_cfg.checkpoint_steps == 0:
                now = time.perf_counter()
                _atomic_save({"model": model.state_dict(), "optim": optim.state_dict(), "rng": rng.bit_generator.state,
                              "torch_rng": torch.get_rng_state(),
                              "state": {**state, "elapsed_before": state["elapsed_before"] + now - start,
                                        "epoch_step": n, "epoch_rng": epoch_rng, "epoch_total": total, "epoch_n": n,
                                        "epoch_seconds": now - t0}}, ckpt)
        state["epoch_step"] = 0
        mean_loss = ddp.all_mean(total, n) if world > 1 else total / max(n, 1)
        record: dict[str, Any] = {"epoch": epoch, "loss": mean_loss, "train_seconds": time.perf_counter() - t0}
        if pretrain:
            record["phase"] = phase
        finetune_epoch = epoch - pretrain
        if rank == 0 and phase == "finetune" and (
                (finetune_epoch + 1) % train_cfg.eval_every == 0 or finetune_epoch + 1 == train_cfg.epochs):
            valid = evaluate(model, split, "valid", eval_cfg, max_len, device)
            record["valid"] = valid.metrics
            score = valid.metrics[metric]
            if score > state["best_score"]:
                state.update(best_score=score, best_epoch=epoch, bad_rounds=0, best_valid=valid.metrics,
                             best_result=valid, best_state=copy.deepcopy(model.state_dict()),
                             seconds_to_best=state["elapsed_before"] + time.perf_counter() - start)
            else:
                state["bad_rounds"] += 1
        elapsed = state["elapsed_before"] + time.perf_counter() - start
        record["elapsed"] = elapsed
        state["history"].append(record)
        log.write(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}", **({metric: f"{record['valid'][metric]:.4f}"} if "valid" in record else {}))
        state["epoch"] = epoch + 1
        rng_ranks = ddp.gather_rng() if world > 1 and ckpt is not None else None  # a collective: every rank
        if ckpt is not None and rank == 0:
            _atomic_save({"model": model.state_dict(), "optim": optim.state_dict(), "rng": rng.bit_generator.state,
                          "torch_rng": torch.get_rng_state(), "torch_rng_ranks": rng_ranks,
                          "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
                          "state": {**state, "elapsed_before": elapsed}}, ckpt)
        stop = None
        if state["bad_rounds"] >= train_cfg.patience:
            stop = "early_stopping"
        # after the last epoch the cap cut nothing: such a run is as reproducible as any other
        elif train_cfg.max_seconds is not None and elapsed > train_cfg.max_seconds and epoch + 1 < pretrain + train_cfg.epochs:
            stop = "max_seconds"
        if world > 1:  # rank 0 validated and decides; the others follow
            stop = ddp.broadcast(stop)
        if stop:
            stopped_by = stop
            break
    bar.close()
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    total_seconds = state["elapsed_before"] + time.perf_counter() - start
    return FitResult(state["best_epoch"], state["epoch"], state["best_valid"], total_seconds,
                     state["seconds_to_best"], state["history"], stopped_by, pretrain,
                     state.get("best_result") if state["best_state"] is not None else None)


def lr_factor(cfg: TrainConfig, epoch: int, step: int) -> float:
    """The multiplier of the base learning rate at fine-tuning ``epoch`` (pretraining: < 0,
    undecayed) and optimizer ``step``: a linear warm-up over ``cfg.warmup_steps``, times a
    cosine or linear decay that reaches 0 at ``cfg.epochs`` (by epoch, so it needs no count
    of batches per epoch).

    >>> from genrecsys.config import TrainConfig
    >>> c = TrainConfig(epochs=10, lr_schedule="cosine", warmup_steps=4)
    >>> [round(lr_factor(c, 0, s), 2) for s in (0, 1, 3, 8)], round(lr_factor(c, 5, 99), 2)
    ([0.25, 0.5, 1.0, 1.0], 0.5)
    >>> round(lr_factor(TrainConfig(epochs=10, lr_schedule="linear"), 9, 0), 2)
    0.1
    """
    f = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "constant" or epoch < 0 or cfg.epochs == 0:
        return f
    progress = min(epoch / cfg.epochs, 1.0)
    return f * (0.5 * (1 + math.cos(math.pi * progress)) if cfg.lr_schedule == "cosine" else 1.0 - progress)


def _pretrain_epochs(model: Recommender, cfg: TrainConfig) -> int:
    n = cfg.pretrain_epochs if cfg.pretrain_epochs is not None else getattr(model, "default_pretrain_epochs", 0)
    if n and not hasattr(model, "set_phase"):
        from genrecsys.errors import GenrecsysError

        raise GenrecsysError(f"{type(model).__name__} has no pretraining objective; drop pretrain_epochs")
    return int(n)


def _progress(cfg: TrainConfig, initial: int, pretrain: int = 0, disable: bool = False):
    from tqdm.auto import tqdm

    return tqdm(total=pretrain + cfg.epochs, initial=initial, desc="train", unit="epoch",
                disable=disable or not cfg.progress, dynamic_ncols=True, leave=False)


def training_precision(precision: str, device: str = "cpu") -> contextlib.AbstractContextManager:
    """The context a training step's forward pass and loss run in (``train.precision``):
    bfloat16 autocast on ``device``'s type for "bfloat16", nothing for "float32"."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def _atomic_save(obj: Any, path: Path) -> None:
    with building_file(path) as tmp:
        torch.save(obj, tmp)


class _JsonLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
