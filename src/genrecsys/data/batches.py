"""Batch builders shared by the models: (user, positive, negative) triples and
sequence windows. Plain functions over `SplitData`, so every model that trains
the same way builds batches the same way."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from genrecsys.data.splits import Part, SplitData


class NegativeSampler:
    """Uniform items in 1..n_items that a user has not interacted with in `part`.

    Rejection sampling, vectorised: draw, find draws that hit the user's items, redraw
    only those. Membership is one searchsorted over keys `user * stride + item`, built once.
    """

    def __init__(self, part: Part, n_items: int) -> None:
        self.n_items = n_items
        self.stride = np.int64(n_items + 1)
        self.keys = np.sort(part.users() * self.stride + part.items)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if len(self.keys) == 0:
            return np.zeros(items.shape, dtype=bool)
        q = items + users.reshape(-1, *([1] * (items.ndim - 1))) * self.stride
        pos = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return self.keys[pos] == q

    def sample(self, users: np.ndarray, rng: np.random.Generator, n_neg: int = 1) -> np.ndarray:
        neg = rng.integers(1, self.n_items + 1, size=(len(users), n_neg))
        rows, cols = np.nonzero(self.contains(users, neg))
        for _ in range(100):  # bounded: a user who saw almost every item could loop forever
            if len(rows) == 0:
                break
            neg[rows, cols] = rng.integers(1, self.n_items + 1, size=len(rows))
            still = self.contains(users[rows], neg[rows, cols][:, None])[:, 0]
            rows, cols = rows[still], cols[still]
        return neg


def pair_batches(split: SplitData, batch_size: int, rng: np.random.Generator, n_neg: int = 1) -> Iterator[dict[str, torch.Tensor]]:
    """One pass over all training interactions in random order, with fresh negatives."""
    users = split.train.users()
    items = split.train.items
    order = rng.permutation(len(users))
    users, items = users[order], items[order]
    neg = NegativeSampler(split.train, split.n_items).sample(users, rng, n_neg)  # the whole epoch at once
    neg = neg if n_neg > 1 else neg[:, 0]
    for start in range(0, len(order), batch_size):
        sl = slice(start, start + batch_size)
        yield {"users": torch.from_numpy(users[sl]), "pos": torch.from_numpy(items[sl]), "neg": torch.from_numpy(neg[sl])}


def sequence_windows(part: Part, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each user's sequence into windows of `max_len` next-item predictions.

    Windows are taken from the end backwards with stride `max_len`, so every training
    transition (prefix -> next item) is a target exactly once, and the newest window
    carries the longest context. Returns inputs (W, L), targets (W, L) — both
    left-padded with 0 — and the window's user (W,).
    """
    inputs, targets, owners = [], [], []
    for u in range(len(part.indptr) - 1):
        seq = part.of(u)
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            chunk = seq[start:end]
            x, y = chunk[:-1], chunk[1:]
            row_x = np.zeros(max_len, dtype=np.int64)
            row_y = np.zeros(max_len, dtype=np.int64)
            row_x[max_len - len(x):] = x
            row_y[max_len - len(y):] = y
            inputs.append(row_x)
            targets.append(row_y)
            owners.append(u)
            end = start + 1  # the next window ends where this one's inputs began
    if not inputs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64), np.zeros(0, np.int64)
    return np.stack(inputs), np.stack(targets), np.asarray(owners, dtype=np.int64)


def shuffled_batches(arrays: dict[str, np.ndarray], batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
    n = len(next(iter(arrays.values())))
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield {k: torch.from_numpy(v[idx]) for k, v in arrays.items()}


def window_batches(model, split, batch_size: int, rng: np.random.Generator,
                   users: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Shuffled batches of the training windows (``seqs``, ``targets`` and, with ``users``,
    each window's ``users``) of a window-trained model: cut once with ``model.config.max_len``
    and kept on the model as ``_windows``."""
    if getattr(model, "_windows", None) is None:
        model._windows = sequence_windows(split.train, model.config.max_len)
    x, y, owners = model._windows
    arrays = {"seqs": x, "targets": y, "users": owners} if users else {"seqs": x, "targets": y}
    return shuffled_batches(arrays, batch_size, rng)


class InteractionRows:
    """Users' rows of the 0/1 interaction matrix, built per batch from a `Part` (never the
    dense (U, I+1) matrix at once): the input of the models that read a whole user vector
    (Mult-VAE/DAE, DiffRec, CFGAN). Column 0 (padding) is always 0.

    >>> rows = InteractionRows(Part(np.array([0, 2, 3]), np.array([1, 3, 2])), n_items=3)
    >>> rows.dense(torch.tensor([1, 0])).tolist()
    [[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]
    >>> rows.dense(torch.tensor([1]), torch.tensor([[0, 3]])).tolist()  # plus the items of a sequence
    [[0.0, 0.0, 1.0, 1.0]]
    """

    def __init__(self, part: Part, n_items: int) -> None:
        self.indptr = torch.as_tensor(part.indptr, dtype=torch.long)
        self.items = torch.as_tensor(part.items, dtype=torch.long)
        self.n_items = n_items

    def dense(self, users: torch.Tensor, seqs: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) user indices [, (B, L) left-padded sequences] -> (B, I+1) float 0/1 rows."""
        users = users.long().cpu()
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        row = torch.repeat_interleave(torch.arange(len(users)), lengths)  # (nnz_batch,)
        offset = torch.arange(int(lengths.sum())) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        cols = self.items[torch.repeat_interleave(starts, lengths) + offset]
        out = torch.zeros(len(users), self.n_items + 1)
        out[row, cols] = 1.0
        if seqs is not None:
            out.scatter_(1, seqs.long().cpu(), 1.0)
        out[:, 0] = 0.0
        return out


def user_batches(split: SplitData, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
    """The users with at least one training interaction, shuffled, in batches of indices."""
    users = np.flatnonzero(split.train.lengths() > 0)
    order = rng.permutation(users)
    for start in range(0, len(order), batch_size):
        yield {"users": torch.from_numpy(order[start:start + batch_size])}
