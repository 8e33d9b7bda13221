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
