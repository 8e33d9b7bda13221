"""DuoRec (Qiu et al., WSDM'22): SASRec's encoder with contrastive regularization.

Trained the way our SASRec is: sequence windows, full-softmax cross-entropy at every
position (each training transition is a target once per epoch). On top, ``lmd`` times an
InfoNCE term (the paper's contrastive regularization; RecBole's default "us_x" mode) on
``cl_positions`` positions sampled per window:

- the unsupervised view: the window encoded again, so dropout draws another mask
  (model-level augmentation), read at the sampled position;
- the supervised view: another training position with the same target item (semantic
  positive; the position itself when no other has that target), read from its own
  window (causal attention: the state there encodes that prefix).

The 2P views of a batch contrast against each other (dot similarity / ``tau``); each
view's positive is its partner, the other 2P - 2 views are negatives. An epoch is three
encoder passes over the windows (~3x SASRec's), not one per training prefix. Scoring is
SASRec's. With RELAND fusion on, the fused user vector feeds the prediction and the
contrastive term keeps acting on the encoder's own output.

>>> from genrecsys.config import ExperimentConfig
>>> cfg = ExperimentConfig(model="duorec", model_params={"tau": 1.0, "lmd": 0.1})
>>> # run_experiment(cfg, "runs/duorec")   # see genrecsys.experiment
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from genrecsys.data.batches import sequence_windows
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.sasrec import SASRec, SASRecConfig


@dataclass
class DuoRecConfig(SASRecConfig):
    tau: float = 1.0  # InfoNCE temperature (RecBole's default)
    lmd: float = 0.1  # weight of the contrastive regularizer (RecBole's lmd_sem)
    cl_positions: int = 1  # positions per training window that enter the contrastive term

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tau <= 0 or self.lmd < 0:
            raise GenrecsysError(f"duorec: tau > 0 and lmd >= 0 are required, got tau={self.tau}, lmd={self.lmd}")
        if self.cl_positions < 1:
            raise GenrecsysError(f"duorec: cl_positions must be >= 1, got {self.cl_positions}")


def window_slots(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, L) window targets -> every position holding a target, row-major, as
    (window (N,), position (N,), target (N,)); a window's slots are contiguous."""
    w, t = np.nonzero(targets)
    return w.astype(np.int64), t.astype(np.int64), targets[w, t]


def same_target_partners(targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N,) targets -> (N,) index of a uniformly drawn *other* sample with the same target,
    or the sample itself when it is the only one with that target."""
    order = np.argsort(targets, kind="stable")
    ordered = targets[order]
    first = np.searchsorted(ordered, ordered, side="left")  # (N,) start of each sample's group
    size = np.searchsorted(ordered, ordered, side="right") - first
    rank = np.arange(len(targets)) - first
    skip = (rng.random(len(targets)) * np.maximum(size - 1, 1)).astype(np.int64)  # 0..size-2
    partner = np.empty_like(order)
    partner[order] = order[first + (rank + 1 + skip) % size]
    return partner


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE over 2B views (B, D), (B, D): a[i] and b[i] are positives, all else negatives."""
    z = torch.cat([a, b])  # (2B, D)
    sim = (z @ z.T) / tau  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    n = len(a)
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, labels)


class DuoRec(SASRec):
    Config = DuoRecConfig
    default_lr = 1e-3
    default_batch_size = 128  # windows, as SASRec; InfoNCE draws its negatives from the batch's sampled positions

    def __init__(self, split: SplitData, config: DuoRecConfig | None = None) -> None:
        super().__init__(split, config)
        self._slots: tuple[np.ndarray, ...] | None = None  # window_slots + each window's first slot and count

    def batches(self, split: SplitData, batch_size: int, rng: np.random.Generator):
        if self._windows is None:
            self._windows = sequence_windows(split.train, self.config.max_len)
            slot_w, slot_t, slot_target = window_slots(self._windows[1])
            first = np.searchsorted(slot_w, np.arange(len(self._windows[0])))  # (W,) each window's first slot
            count = np.bincount(slot_w, minlength=len(self._windows[0]))  # (W,) >= 1: every window has a target
            self._slots = (slot_w, slot_t, slot_target, first, count)
        x, y, owners = self._windows
        slot_w, slot_t, slot_target, first, count = self._slots
        partners = same_target_partners(slot_target, rng)  # fresh semantic positives every epoch
        k = self.config.cl_positions
        order = rng.permutation(len(x))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]  # (B,) windows
            picked = first[idx, None] + (rng.random((len(idx), k)) * count[idx, None]).astype(np.int64)  # (B, k)
            picked = picked.reshape(-1)  # (P,) slots, P = B * k
            pair = partners[picked]
            batch = {"seqs": x[idx], "targets": y[idx], "users": owners[idx],
                     "cl_rows": np.repeat(np.arange(len(idx)), k), "cl_at": slot_t[picked],
                     "positives": x[slot_w[pair]], "pos_at": slot_t[pair]}
            yield {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in batch.items()}

    def loss(self, batch):
        loss = super().loss(batch)  # cross-entropy at every position of the windows (SASRec's)
        if self.config.lmd > 0:
            aug = self.encode(batch["seqs"])[batch["cl_rows"], batch["cl_at"]]  # (P, D): another dropout mask
            sem = self.encode(batch["positives"])  # (P, L, D): the same-target positions' own windows
            sem = sem[torch.arange(len(sem)), batch["pos_at"]]  # (P, D)
            loss = loss + self.config.lmd * info_nce(aug, sem, self.config.tau)
        return loss
