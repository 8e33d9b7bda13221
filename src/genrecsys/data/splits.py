"""Train / validation / test splits in index space.

Users are indexed 0..U-1 and items 1..I (0 is padding, so sequence models can use it).
Every part of a split is a CSR-style (indptr, items) pair grouped by user, so one
representation serves leave-one-out (one target per user) and ratio splits (many).

Tie rule: each user's interactions are ordered by integer timestamp, and equal
timestamps keep their order in the source file (a stable sort). So "the last item"
of a user is the last row among that user's latest-timestamp rows. RecBole instead
sorts min-max-scaled float32 timestamps (~2 s resolution), which reorders ties for a
handful of ML-100K users; see tests/data/test_splits.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError


@dataclass
class Part:
    """Per-user item lists: items of user u are items[indptr[u]:indptr[u+1]]."""

    indptr: np.ndarray  # (U+1,) int64
    items: np.ndarray  # (nnz,) int64, in chronological order within a user

    def of(self, u: int) -> np.ndarray:
        return self.items[self.indptr[u]:self.indptr[u + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def users(self) -> np.ndarray:
        """Row index (user) of every stored item."""
        return np.repeat(np.arange(len(self.indptr) - 1), self.lengths())

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])


@dataclass
class SplitData:
    dataset: Dataset
    user_ids: np.ndarray  # (U,) raw ids as str
    item_ids: np.ndarray  # (I+1,) raw ids as str, item_ids[0] = "" (padding)
    train: Part
    valid: Part
    test: Part
    protocol: str
    meta: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of real items; valid item indices are 1..n_items."""
        return len(self.item_ids) - 1

    def user_index(self, raw: str) -> int:
        idx = self._user_lookup().get(str(raw))
        if idx is None:
            raise GenrecsysError(f"unknown user {raw!r} (dataset {self.dataset.name} has {self.n_users} users)")
        return idx

    def _user_lookup(self) -> dict[str, int]:
        if "_user_lookup" not in self.meta:
            self.meta["_user_lookup"] = {u: i for i, u in enumerate(self.user_ids)}
        return self.meta["_user_lookup"]

    def history(self, stage: str) -> Part:
        """Items a model may see before predicting `stage` ('valid' or 'test')."""
        if stage == "valid":
            return self.train
        if stage == "test":
            return concat_parts(self.train, self.valid)
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def targets(self, stage: str) -> Part:
        return {"valid": self.valid, "test": self.test}[stage]

    def eval_users(self, stage: str) -> np.ndarray:
        return np.flatnonzero(self.targets(stage).lengths() > 0)

    def train_matrix(self):
        """Binary user x item CSR matrix (I+1 columns; column 0 stays empty)."""
        import scipy.sparse as sp

        data = np.ones(self.train.nnz, dtype=np.float32)
        m = sp.csr_matrix((data, self.train.items, self.train.indptr), shape=(self.n_users, self.n_items + 1))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m


def concat_parts(a: Part, b: Part) -> Part:
    """Per user, a's items then b's items."""
    la, lb = a.lengths(), b.lengths()
    indptr = np.concatenate([[0], np.cumsum(la + lb)]).astype(np.int64)
    items = np.empty(indptr[-1], dtype=np.int64)
    pos_a = np.repeat(indptr[:-1], la) + (np.arange(a.nnz) - np.repeat(a.indptr[:-1], la))
    pos_b = np.repeat(indptr[:-1] + la, lb) + (np.arange(b.nnz) - np.repeat(b.indptr[:-1], lb))
    items[pos_a] = a.items
    items[pos_b] = b.items
    return Part(indptr, items)


def _index(ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    inter = ds.interactions
    if len(inter) == 0:
        raise GenrecsysError(f"{ds.name}: no interactions left to split (after filtering?)")
    user_codes, user_ids = pd.factorize(inter["user"], sort=True)
    item_codes, item_ids = pd.factorize(inter["item"], sort=True)
    # Stable sort by (user, timestamp): equal timestamps keep file order.
    order = np.lexsort((np.arange(len(inter)), inter["timestamp"].to_numpy(), user_codes))
    users = user_codes[order].astype(np.int64)
    items = item_codes[order].astype(np.int64) + 1
    counts = np.bincount(users, minlength=len(user_ids))
    return users, items, counts, np.asarray(user_ids, dtype=str), np.concatenate([[""], np.asarray(item_ids, dtype=str)])


def _parts_from_masks(users: np.ndarray, items: np.ndarray, n_users: int, which: np.ndarray) -> tuple[Part, Part, Part]:
    parts = []
    for k in range(3):
        sel = which == k
        counts = np.bincount(users[sel], minlength=n_users)
        parts.append(Part(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), items[sel]))
    return tuple(parts)  # type: ignore[return-value]


def leave_one_out(ds: Dataset) -> SplitData:
    """Chronological leave-one-out: last item = test, second last = validation.

    Users with fewer than 3 interactions keep everything in training and are not
    evaluated (they have no held-out item).
    """
    users, items, counts, user_ids, item_ids = _index(ds)
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    pos_in_user = np.arange(len(users)) - np.repeat(starts, counts)
    from_end = np.repeat(counts, counts) - pos_in_user  # 1 = last
    eligible = np.repeat(counts >= 3, counts)
    which = np.zeros(len(users), dtype=np.int8)
    which[eligible & (from_end == 2)] = 1
    which[eligible & (from_end == 1)] = 2
    train, valid, test = _parts_from_masks(users, items, len(user_ids), which)
    return SplitData(ds, user_ids, item_ids, train, valid, test, protocol="loo")


def ratio_split(ds: Dataset, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), *,
                shuffle: bool = False, seed: int = 0) -> SplitData:
    """Per-user ratio split: chronological (default) or random order (`shuffle=True`).

    Boundaries are floor(cumsum(ratios) * n) within each user's sequence.
    """
    users, items, counts, user_ids, item_ids = _index(ds)
    if shuffle:
        rng = np.random.default_rng(seed)
        order = np.lexsort((rng.random(len(users)), users))
        users, items = users[order], items[order]
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    pos = np.arange(len(users)) - np.repeat(starts, counts)
    n = np.repeat(counts, counts)
    b1 = np.floor(ratios[0] * n + 1e-9)
    b2 = np.floor((ratios[0] + ratios[1]) * n + 1e-9)
    which = np.where(pos < b1, 0, np.where(pos < b2, 1, 2)).astype(np.int8)
    train, valid, test = _parts_from_masks(users, items, len(user_ids), which)
    return SplitData(ds, user_ids, item_ids, train, valid, test, protocol="random_ratio" if shuffle else "ratio")
