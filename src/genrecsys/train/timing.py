"""Where an epoch's time goes: batch building, forward pass, loss, backward pass, optimizer
step and validation, timed apart for any model on the one training loop's step
(`genrecsys.train.loop`: ``model.loss`` -> ``backward`` -> ``step``).

The model's ``loss`` is split into forward and loss where the model has an ``encode`` (the
sequence models: ``encode`` is the forward pass, the rest of ``loss`` — output layer and
cross-entropy — is timed as the loss); for the others forward and loss are one figure.
Timings are wall clock on the calling thread; run it on an idle machine.

>>> # epoch_breakdown(build_model("sasrec", {}, split), split, epochs=2)  # see benchmarks/train_profile.py
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from genrecsys.config import EvalConfig
from genrecsys.data.splits import SplitData
from genrecsys.models.base import Recommender

PARTS = ("batches", "forward", "loss", "backward", "optimizer", "validation")


def epoch_breakdown(model: Recommender, split: SplitData, *, epochs: int = 2, batch_size: int | None = None,
                    lr: float | None = None, max_len: int = 50, bf16: bool = False,
                    eval_cfg: EvalConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """Seconds per epoch of each of :data:`PARTS` (mean over ``epochs``), their total and
    the steps per epoch. ``bf16``: the forward pass and loss under CPU bfloat16 autocast."""
    from genrecsys.train.loop import evaluate, training_precision

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optim = model.make_optimizer(lr if lr is not None else model.default_lr, model.default_weight_decay)
    encode = getattr(model, "encode", None)
    spent = dict.fromkeys(PARTS, 0.0)
    steps = 0
    for _ in range(epochs):
        model.train()
        model.on_train_start()
        t = time.perf_counter()
        batches = list(model.batches(split, batch_size or model.default_batch_size, rng))
        spent["batches"] += time.perf_counter() - t
        steps = len(batches)
        for batch in batches:
            t0 = time.perf_counter()
            forward = 0.0
            with training_precision("bfloat16" if bf16 else "float32"):
                if encode is not None and "seqs" in batch:
                    encode(batch["seqs"])  # timed alone, then again inside the loss (subtracted below)
                    forward = time.perf_counter() - t0
                t1 = time.perf_counter()
                loss = model.loss(batch)
            t2 = time.perf_counter()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            t3 = time.perf_counter()
            optim.step()
            t4 = time.perf_counter()
            spent["forward"] += forward
            spent["loss"] += max(t2 - t1 - forward, 0.0) if forward else t2 - t0
            spent["backward"] += t3 - t2
            spent["optimizer"] += t4 - t3
        t = time.perf_counter()
        evaluate(model, split, "valid", eval_cfg or EvalConfig(), max_len)
        spent["validation"] += time.perf_counter() - t
    per_epoch = {k: v / epochs for k, v in spent.items()}
    return {**per_epoch, "total": sum(per_epoch.values()), "steps_per_epoch": steps, "bf16": bf16}
