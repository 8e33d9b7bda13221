"""DuoRec (Qiu et al., WSDM'22): SASRec's encoder with contrastive regularization.

Each training transition is one sample: the left-padded prefix of a user's training
sequence and the item that follows it. The loss is full-softmax cross-entropy on the
last position's representation h plus `lmd` times an InfoNCE term between two
augmented views of each sample (the paper's contrastive regularization; RecBole's
default "us_x" mode):

- the unsupervised view h': the same prefix encoded again, so dropout draws another
  mask (model-level augmentation);
- the supervised view h'_s: another training prefix with the same target item
  (semantic positive; the sample itself when no other prefix has that target).

The 2B views of a batch contrast against each other (dot similarity / `tau`); each
view's positive is its partner, the other 2B - 2 views are negatives. Scoring is
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

from genrecsys.data.splits import Part, SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.sasrec import SASRec, SASRecConfig
from genrecsys.reasoning.fusion import fuse_users


@dataclass
class DuoRecConfig(SASRecConfig):
    tau: float = 1.0  # InfoNCE temperature (RecBole's default)
    lmd: float = 0.1  # weight of the contrastive regularizer (RecBole's lmd_sem)

    def __post_init__(self) -> None:
        if self.tau <= 0 or self.lmd < 0:
            raise GenrecsysError(f"duorec: tau > 0 and lmd >= 0 are required, got tau={self.tau}, lmd={self.lmd}")


def prefix_samples(part: Part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every training transition as (owner (N,), end (N,), target (N,)).

    The prefix of sample n is ``part.items[part.indptr[owner]:end]`` and its target
    ``part.items[end]``; every item but a user's first is a target once.
    """
    owners = part.users()
    ends = np.arange(part.nnz, dtype=np.int64)
    keep = ends > part.indptr[owners]
    return owners[keep], ends[keep], part.items[keep]


def prefix_rows(part: Part, owners: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """(B,) samples -> (B, max_len) their prefixes' last max_len items, left-padded with 0."""
    pos = ends[:, None] - max_len + np.arange(max_len)  # (B, L) positions in part.items
    valid = pos >= part.indptr[owners][:, None]
    return np.where(valid, part.items[np.clip(pos, 0, None)], 0)


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
    default_batch_size = 256  # the DuoRec paper's; InfoNCE draws its negatives from the batch

    def __init__(self, split: SplitData, config: DuoRecConfig | None = None) -> None:
        super().__init__(split, config)
        self._samples: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def batches(self, split: SplitData, batch_size: int, rng: np.random.Generator):
        if self._samples is None:
            self._samples = prefix_samples(split.train)
        owners, ends, targets = self._samples
        partners = same_target_partners(targets, rng)  # fresh semantic positives every epoch
        order = rng.permutation(len(targets))
        L = self.config.max_len
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            pair = partners[idx]
            yield {"seqs": torch.from_numpy(prefix_rows(split.train, owners[idx], ends[idx], L)),
                   "targets": torch.from_numpy(targets[idx]),
                   "users": torch.from_numpy(owners[idx]),
                   "positives": torch.from_numpy(prefix_rows(split.train, owners[pair], ends[pair], L))}

    def loss(self, batch):
        h = self.encode(batch["seqs"])[:, -1]  # (B, D)
        logits = fuse_users(self.user_fusion, h, batch["users"]) @ self.items().T  # (B, I+1)
        loss = F.cross_entropy(logits, batch["targets"])
        if self.config.lmd > 0:
            aug = self.encode(batch["seqs"])[:, -1]  # another dropout mask: the unsupervised view
            sem = self.encode(batch["positives"])[:, -1]  # same target: the supervised view
            loss = loss + self.config.lmd * info_nce(aug, sem, self.config.tau)
        return loss
