"""Impression evaluation (MIND / GENRE): AUC, MRR, nDCG@5 and nDCG@10 of each impression,
averaged over impressions, for all users and separately for new and warm users.

A user is *new* at an impression when their history (what the model sees) holds fewer
than `new_user_history` items (GENRE §3.4: fewer than 5), otherwise *warm*. (GENRE's
footnote 4 says warm users browsed "more than five"; a user with exactly five is warm here,
so that the two groups partition the users.)

`impression_metrics` is the vectorised path; `impression_metrics_reference` loops over
impressions with `genrecsys.eval.metrics.auc / mrr_score / ndcg_score`; a test pins
that they agree. Score ties: AUC counts them 1/2; MRR and nDCG rank the earlier
candidate first, as `mrr_score` and `ndcg_score` do.

>>> import numpy as np
>>> m = impression_metrics(np.array([0.9, 0.1, 0.5, 0.2, 0.8]), np.array([1, 0, 0, 1, 0]), np.array([0, 3, 5]))
>>> [round(float(x), 3) for x in m["auc"]], [round(float(x), 3) for x in m["mrr"]]
([1.0, 0.0], [1.0, 0.5])
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from genrecsys.eval.metrics import _discount, auc, mrr_score, ndcg_score
from genrecsys.eval.ranking import RankingResult, pad_left

IMPRESSION_METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")
GROUPS = ("new", "warm")
# (users (B,), left-padded histories (B, L), candidates (B, C), 0 = padding) -> scores (B, C)
CandidateScoreFn = Callable[[np.ndarray, np.ndarray, np.ndarray], "object"]


def impression_metrics(scores: np.ndarray, labels: np.ndarray, indptr: np.ndarray,
                       ks: tuple[int, ...] = (5, 10)) -> dict[str, np.ndarray]:
    """Per-impression AUC, MRR and nDCG@k; impression i is rows indptr[i]:indptr[i+1].

    Every impression needs a click and a non-click (AUC is undefined otherwise).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    indptr = np.asarray(indptr, dtype=np.int64)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    sizes = np.diff(indptr)
    n = len(sizes)
    imp = np.repeat(np.arange(n), sizes)
    start = np.repeat(indptr[:-1], sizes)
    n_pos = np.bincount(imp, weights=y, minlength=n)
    n_neg = sizes - n_pos
    if ((n_pos == 0) | (n_neg == 0)).any():
        raise ValueError("every impression needs at least one clicked and one non-clicked candidate")
    # Rank by score descending; ties keep candidate order.
    order = np.lexsort((np.arange(len(s)), -s, imp))
    rank = np.empty(len(s))
    rank[order] = np.arange(len(s)) - start[order] + 1.0  # `order` keeps impressions contiguous
    out = {"mrr": np.bincount(imp, weights=y / rank, minlength=n) / n_pos}
    for k in ks:
        disc = np.where(rank <= k, 1.0 / np.log2(rank + 1.0), 0.0)
        dcg = np.bincount(imp, weights=y * disc, minlength=n)
        ideal = np.concatenate([[0.0], np.cumsum(_discount(k))])[np.minimum(n_pos, k).astype(np.int64)]
        out[f"ndcg@{k}"] = dcg / ideal
    # AUC: Mann-Whitney U with average ranks for ties, within each impression.
    asc = np.lexsort((s, imp))
    s_sorted, imp_sorted = s[asc], imp[asc]
    new_group = np.ones(len(s), dtype=bool)
    new_group[1:] = (s_sorted[1:] != s_sorted[:-1]) | (imp_sorted[1:] != imp_sorted[:-1])
    group = np.cumsum(new_group) - 1
    first = np.flatnonzero(new_group)
    last = np.append(first[1:], len(s)) - 1
    avg_rank = np.empty(len(s))
    avg_rank[asc] = (first + last)[group] / 2.0 - indptr[imp_sorted] + 1.0
    rank_sum = np.bincount(imp, weights=np.where(y, avg_rank, 0.0), minlength=n)
    out["auc"] = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return {k: out[k] for k in ("auc", "mrr", *[f"ndcg@{k}" for k in ks])}


def impression_metrics_reference(scores: np.ndarray, labels: np.ndarray, indptr: np.ndarray,
                                 ks: tuple[int, ...] = (5, 10)) -> dict[str, np.ndarray]:
    """The plain twin of `impression_metrics`: one call of the metric functions per impression."""
    out: dict[str, list[float]] = {"auc": [], "mrr": [], **{f"ndcg@{k}": [] for k in ks}}
    for a, b in zip(indptr[:-1], indptr[1:]):
        s, y = scores[a:b], labels[a:b]
        out["auc"].append(auc(s, y))
        out["mrr"].append(mrr_score(s, y))
        for k in ks:
            out[f"ndcg@{k}"].append(ndcg_score(s, y, k))
    return {k: np.asarray(v) for k, v in out.items()}


def summarize(per_impression: dict[str, np.ndarray], new: np.ndarray) -> dict[str, float]:
    """Means over all impressions, then over new-user and warm-user impressions
    (`new_auc`, `warm_ndcg@10`, ...), plus the impression counts of each group.
    A group without impressions reports NaN."""
    out: dict[str, float] = {}
    for prefix, mask in (("", np.ones(len(new), dtype=bool)), ("new_", new), ("warm_", ~new)):
        for name, values in per_impression.items():
            out[prefix + name] = float(values[mask].mean()) if mask.any() else float("nan")
        out[f"{prefix}impressions"] = float(mask.sum())
    return out


def evaluate_impressions(score_fn: CandidateScoreFn, split, stage: str, impressions, *, max_len: int = 50,
                         batch_impressions: int = 256, new_user_history: int = 5) -> RankingResult:
    """Score every impression of `stage` from the user's history at that stage
    (`split.history(stage)`, the most recent `max_len` items) and average the metrics.

    `per_user` holds each user's mean over their impressions (for paired tests).
    """
    import torch

    history = split.history(stage)
    imp = impressions
    sizes = imp.sizes()
    scores = np.empty(len(imp.items), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(imp), batch_impressions):
            rows = np.arange(start, min(start + batch_impressions, len(imp)))
            users = imp.users[rows]
            width = int(sizes[rows].max())
            cand = np.zeros((len(rows), width), dtype=np.int64)
            valid = np.arange(width)[None, :] < sizes[rows][:, None]
            cand[valid] = imp.items[imp.indptr[rows[0]]:imp.indptr[rows[-1] + 1]]
            out = torch.as_tensor(score_fn(users, pad_left(history, users, max_len), cand), dtype=torch.float64)
            scores[imp.indptr[rows[0]]:imp.indptr[rows[-1] + 1]] = out.numpy()[valid]
    per_imp = impression_metrics(scores, imp.labels, imp.indptr)
    new = history.lengths()[imp.users] < new_user_history
    metrics = summarize(per_imp, new)
    users, inverse = np.unique(imp.users, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(users))
    per_user = {k: np.bincount(inverse, weights=v, minlength=len(users)) / counts for k, v in per_imp.items()}
    return RankingResult(metrics, per_user, users, protocol="impressions")
