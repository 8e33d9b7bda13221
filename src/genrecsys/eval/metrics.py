"""Ranking metrics as pure numpy functions over top-K hit matrices.

`hits` is a (n_users, K) boolean matrix: hits[u, r] is True when the item ranked
r+1 for user u is a held-out target. `n_pos` is each user's number of targets.
Every function returns per-user values; average them for the reported figure.

>>> import numpy as np
>>> hits = np.array([[False, True, False]])
>>> float(ndcg_at_k(hits, np.array([1]), 3)[0])  # 1/log2(3)
0.6309297535714575
"""
from __future__ import annotations

import numpy as np

_DISCOUNT = 1.0 / np.log2(np.arange(2, 10_002))  # position r (0-based) -> 1/log2(r+2)


def _discount(k: int) -> np.ndarray:
    return _DISCOUNT[:k] if k <= len(_DISCOUNT) else 1.0 / np.log2(np.arange(2, k + 2))


def hit_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1 if any target is in the top k (a.k.a. HR@k)."""
    return hits[:, :k].any(axis=1).astype(np.float64)


def recall_at_k(hits: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / np.maximum(n_pos, 1)


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / float(k)


def ndcg_at_k(hits: np.ndarray, n_pos: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance NDCG: DCG of the top k over the DCG of an ideal ranking."""
    disc = _discount(k)
    dcg = (hits[:, :k] * disc[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = ideal_cum[np.minimum(n_pos, k)]
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def mrr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Reciprocal rank of the first target within the top k, else 0."""
    h = hits[:, :k]
    first = h.argmax(axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0)


RANKING_METRICS = ("hit", "recall", "precision", "ndcg", "mrr")


def ranking_metrics(hits: np.ndarray, n_pos: np.ndarray, ks: tuple[int, ...]) -> dict[str, np.ndarray]:
    """All ranking metrics at all ks, per user: {'ndcg@10': array(n_users), ...}."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"hit@{k}"] = hit_at_k(hits, k)
        out[f"recall@{k}"] = recall_at_k(hits, n_pos, k)
        out[f"precision@{k}"] = precision_at_k(hits, k)
        out[f"ndcg@{k}"] = ndcg_at_k(hits, n_pos, k)
        out[f"mrr@{k}"] = mrr_at_k(hits, k)
    return out


# --- Classification-style metrics on scored (user, item) pairs ----------------------


def _as_scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be binary (0/1 or bool); were scores and labels swapped?")
    return s, y.astype(bool)


def _average_ranks(keys: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """1-based ranks of `keys` within segments, tied values sharing their average rank.

    `order` sorts the values so that each segment is contiguous and ascending inside;
    `starts[i]` is the first sorted position of the segment that position i belongs to.
    `keys` (sorted) changes value exactly where a new tie group begins.
    """
    n = len(order)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = keys[1:] != keys[:-1]
    group = np.cumsum(new_group) - 1
    first = np.flatnonzero(new_group)
    last = np.append(first[1:], n) - 1
    rank_in_segment = (first + last) / 2.0 - starts[first] + 1.0  # average of the tied positions
    ranks = np.empty(n)
    ranks[order] = rank_in_segment[group]
    return ranks


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC: the chance that a random positive outscores a random negative, ties
    counting 1/2 (the Mann-Whitney U statistic over n_pos * n_neg, via average ranks).

    Raises ValueError when labels hold only one class (AUC is undefined).

    >>> auc(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0]))  # 3 wins + 1 tie of 4 pairs
    0.875
    """
    s, y = _as_scores_labels(scores, labels)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"auc is undefined with {n_pos} positive and {n_neg} negative labels")
    order = np.argsort(s, kind="stable")
    ranks = _average_ranks(s[order], order, np.zeros(len(s), dtype=np.int64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def gauc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Group AUC (as in DIN): the AUC within each group (usually a user or an impression),
    averaged with each group weighted by its number of rows.

    Groups whose labels are all positive or all negative have no AUC; they are skipped
    and neither their AUC nor their weight enters the average. Raises ValueError when
    no group has both classes.

    >>> gauc(np.array([0.9, 0.1, 0.2, 0.8, 0.5]), np.array([1, 0, 1, 0, 1]), np.array([0, 0, 1, 1, 2]))
    0.5
    """
    s, y = _as_scores_labels(scores, labels)
    g = np.asarray(groups).ravel()
    if g.shape != s.shape:
        raise ValueError(f"groups and scores differ in length: {g.shape[0]} vs {s.shape[0]}")
    _, gid = np.unique(g, return_inverse=True)
    order = np.lexsort((s, gid))  # by group, then score ascending
    g_sorted, s_sorted = gid[order], s[order]
    seg_new = np.ones(len(s), dtype=bool)
    seg_new[1:] = g_sorted[1:] != g_sorted[:-1]
    seg_start = np.flatnonzero(seg_new)
    starts = np.repeat(seg_start, np.diff(np.append(seg_start, len(s))))
    # A tie group is the same score inside the same group.
    tie_key = np.cumsum(seg_new | np.append(True, s_sorted[1:] != s_sorted[:-1]))
    ranks = _average_ranks(tie_key, order, starts)
    n_groups = gid.max() + 1 if len(gid) else 0
    size = np.bincount(gid, minlength=n_groups).astype(np.float64)
    n_pos = np.bincount(gid, weights=y, minlength=n_groups)
    n_neg = size - n_pos
    rank_sum = np.bincount(gid, weights=np.where(y, ranks, 0.0), minlength=n_groups)
    both = (n_pos > 0) & (n_neg > 0)
    if not both.any():
        raise ValueError("gauc is undefined: no group has both positive and negative labels")
    group_auc = (rank_sum[both] - n_pos[both] * (n_pos[both] + 1) / 2.0) / (n_pos[both] * n_neg[both])
    return float((group_auc * size[both]).sum() / size[both].sum())


# --- Metrics on one scored impression (candidate list), as in MIND evaluation ---------
# MIND's evaluate.py sorts with np.argsort(y_score)[::-1], whose order of tied scores is
# unspecified; here ties keep candidate order (the earlier candidate ranks first).


def _ranked_labels(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    s, y = _as_scores_labels(scores, labels)
    if not y.any():
        raise ValueError("the impression has no positive (clicked) candidate")
    return y[np.argsort(-s, kind="stable")].astype(np.float64)


def mrr_score(scores: np.ndarray, labels: np.ndarray) -> float:
    """MIND's MRR of one impression: the mean reciprocal rank over *all* clicked
    candidates (not only the first), i.e. sum(y_r / r) / sum(y).

    >>> mrr_score(np.array([0.1, 0.9, 0.5]), np.array([1, 0, 1]))  # clicks at ranks 2 and 3
    0.41666666666666663
    """
    y = _ranked_labels(scores, labels)
    return float((y / np.arange(1, len(y) + 1)).sum() / y.sum())


def ndcg_score(scores: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """MIND's nDCG@k of one impression: DCG of the top k by `scores` over the DCG of the
    top k by `labels` (binary gains, 1/log2(rank+1) discounts).

    >>> ndcg_score(np.array([0.1, 0.9, 0.5]), np.array([1, 0, 1]), k=3)  # hits at ranks 2, 3
    0.6934264036172708
    """
    y = _ranked_labels(scores, labels)
    disc = _discount(k)[: min(k, len(y))]
    dcg = (y[:k] * disc).sum()
    idcg = disc[: int(min(y.sum(), k))].sum()
    return float(dcg / idcg)
