"""Training batches for impression-protocol models: sessions of clicks that share a history.

Every training click is a target once per epoch, with `n_neg` negatives. Clicks are
grouped into sessions whose targets share the user's history before the session, so
the user encoder runs once per session rather than once per click:

- with logged training impressions (MIND), a session is an impression's clicks (split
  into chunks of `session_size`), negatives drawn from that impression's non-clicked
  news (uniformly, with replacement; uniform over the catalog when it has none);
- otherwise consecutive clicks of a user's training sequence are cut into sessions of
  `session_size`, at a random offset per user and epoch; negatives are uniform over the
  items the user has not interacted with in training. `session_size=1` is the plain
  "every prefix predicts its next click" setting.

A batch holds `hist` (B, L) left-padded, `cands` (B, G, 1 + n_neg) — candidate 0 is the
click — `mask` (B, G) real targets, and `users` (B,).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from genrecsys.data.splits import SplitData
from genrecsys.train.batches import NegativeSampler


def _sessions_from_sequences(split: SplitData, size: int, rng: np.random.Generator):
    """(users, history end, target start, target count) of consecutive-click sessions."""
    lengths = split.train.lengths()
    users, ends, counts = [], [], []
    for u in np.flatnonzero(lengths >= 2):
        n = int(lengths[u])
        offset = int(rng.integers(size))
        starts = np.unique(np.concatenate([[1], np.arange(1 + offset, n, size)]))
        stops = np.append(starts[1:], n)
        users.append(np.full(len(starts), u))
        ends.append(starts)
        counts.append(stops - starts)
    if not users:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(users), np.concatenate(ends), np.concatenate(counts)


def _sessions_from_impressions(split: SplitData, size: int):
    imp = split.meta["train_impressions"]
    clicks = np.add.reduceat((imp.labels == 1).astype(np.int64), imp.indptr[:-1]) if len(imp) else np.zeros(0, np.int64)
    rows = np.flatnonzero(clicks > 0)
    chunks = -(-clicks[rows] // size)
    row = np.repeat(rows, chunks)
    part = np.arange(len(row)) - np.repeat(np.cumsum(chunks) - chunks, chunks)
    start = imp.hist_len[row] + part * size
    count = np.minimum(size, clicks[row] - part * size)
    return imp.users[row], imp.hist_len[row], start, count, row


def session_batches(split: SplitData, batch_size: int, rng: np.random.Generator, *, session_size: int = 5,
                    max_history: int = 50, n_neg: int = 4) -> Iterator[dict[str, torch.Tensor]]:
    """One epoch of shuffled session batches (see the module docstring)."""
    logged = split.meta.get("train_impressions") is not None
    if logged:
        users, hist_end, t_start, t_count, imp_row = _sessions_from_impressions(split, session_size)
    else:
        users, t_start, t_count = _sessions_from_sequences(split, session_size, rng)
        hist_end = t_start
    S, G, L = len(users), session_size, max_history
    order = rng.permutation(S)
    users, hist_end, t_start, t_count = users[order], hist_end[order], t_start[order], t_count[order]
    base = split.train.indptr[users]
    # history: the L items before hist_end, left-padded
    offs = np.arange(-L, 0)[None, :] + hist_end[:, None]  # (S, L) positions in the user's sequence
    hist = np.where(offs >= 0, split.train.items[np.clip(base[:, None] + offs, 0, None)], 0)
    tpos = t_start[:, None] + np.arange(G)[None, :]
    mask = np.arange(G)[None, :] < t_count[:, None]
    targets = np.where(mask, split.train.items[np.clip(base[:, None] + tpos, 0, split.train.nnz - 1)], 0)
    if logged:
        negs = _impression_negatives(split, imp_row[order], G, n_neg, rng)
    else:
        flat = NegativeSampler(split.train, split.n_items).sample(np.repeat(users, G), rng, n_neg)
        negs = flat.reshape(S, G, n_neg)
    cands = np.concatenate([targets[:, :, None], negs], axis=2) * mask[:, :, None]
    for start in range(0, S, batch_size):
        sl = slice(start, start + batch_size)
        yield {"users": torch.from_numpy(users[sl]), "hist": torch.from_numpy(hist[sl]),
               "cands": torch.from_numpy(cands[sl]), "mask": torch.from_numpy(mask[sl])}


def _impression_negatives(split: SplitData, rows: np.ndarray, G: int, n_neg: int, rng: np.random.Generator) -> np.ndarray:
    imp = split.meta["train_impressions"]
    neg_mask = imp.labels == 0
    neg_counts = np.add.reduceat(neg_mask.astype(np.int64), imp.indptr[:-1])
    # flat index of each impression's non-clicked candidates, grouped by impression
    neg_items = imp.items[neg_mask]
    neg_start = np.concatenate([[0], np.cumsum(neg_counts)])[:-1]
    n = neg_counts[rows]  # (S,)
    draw = (rng.random((len(rows), G, n_neg)) * np.maximum(n, 1)[:, None, None]).astype(np.int64)
    picked = neg_items[np.minimum(neg_start[rows][:, None, None] + draw, max(len(neg_items) - 1, 0))] \
        if len(neg_items) else np.zeros((len(rows), G, n_neg), np.int64)
    empty = n == 0
    if empty.any():
        picked[empty] = rng.integers(1, split.n_items + 1, size=(int(empty.sum()), G, n_neg))
    return picked
