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

Synthetic items (an augmented variant's LLM-generated items, `genrecsys.data.augmented`)
only ever appear in `hist`: a user's history is their synthetic items (indices above
`n_items`) followed by the real clicks before the session, so the real clicks stay the
most recent within `max_history`. Targets and negatives are real items. A user's first
training click, which has no real history before it, becomes a target too when the user
has synthetic items (its history is then the synthetic items alone: the new user's only
context). Without synthetic items the batches are exactly those of a plain dataset.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from genrecsys.data.batches import NegativeSampler
from genrecsys.data.splits import Part, SplitData


def _sessions_from_sequences(split: SplitData, size: int, rng: np.random.Generator,
                             first: np.ndarray | None = None):
    """(users, history end, target start, target count) of consecutive-click sessions.
    `first` (U,) is each user's first target position (default 1: the first click has no
    history to predict it from)."""
    lengths = split.train.lengths()
    first = np.ones(len(lengths), dtype=np.int64) if first is None else first
    users, ends, counts = [], [], []
    for u in np.flatnonzero(lengths >= first + 1):
        n = int(lengths[u])
        offset = int(rng.integers(size))
        f = int(first[u])
        starts = np.unique(np.concatenate([[f], np.arange(f + offset, n, size)]))
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
    from genrecsys.data.augmented import synthetic_history

    syn = synthetic_history(split)
    logged = split.meta.get("train_impressions") is not None
    if logged:
        users, hist_end, t_start, t_count, imp_row = _sessions_from_impressions(split, session_size)
    else:
        first = None if syn is None else np.where(syn.lengths() > 0, 0, 1)
        users, t_start, t_count = _sessions_from_sequences(split, session_size, rng, first)
        hist_end = t_start
    S, G, L = len(users), session_size, max_history
    order = rng.permutation(S)
    users, hist_end, t_start, t_count = users[order], hist_end[order], t_start[order], t_count[order]
    base = split.train.indptr[users]
    # history: the L items before hist_end, left-padded
    offs = np.arange(-L, 0)[None, :] + hist_end[:, None]  # (S, L) positions in the user's sequence
    hist = np.where(offs >= 0, split.train.items[np.clip(base[:, None] + offs, 0, None)], 0)
    if syn is not None:
        hist = _prepend_synthetic(hist, offs, users, syn)
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


def _prepend_synthetic(hist: np.ndarray, offs: np.ndarray, users: np.ndarray, syn: Part) -> np.ndarray:
    """Read each row's history from `synthetic items + real clicks` instead of the real
    clicks alone. `offs` (S, L) are positions in the real sequence (negative = before it);
    position -k maps to the user's k-th synthetic item from the end."""
    n_syn = syn.lengths()[users][:, None]  # (S, 1)
    sp = offs + n_syn  # (S, L) positions in the user's synthetic list
    from_syn = (offs < 0) & (sp >= 0)
    picked = syn.items[np.clip(syn.indptr[users][:, None] + sp, 0, max(syn.nnz - 1, 0))] if syn.nnz else 0
    return np.where(from_syn, picked, hist)


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
