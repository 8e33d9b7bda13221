"""Sampled-negatives ranking: each user's targets against 100 random negatives.

Many papers rank the held-out item against 100 sampled items instead of the whole
catalog. The numbers are much higher than full-ranking ones and do not order models
the same way (Krichene & Rendle, KDD 2020), so this module labels everything it
returns: metric keys read `sampled100_ndcg@10`, and the result's `protocol` is
"sampled-100". Full ranking (`genrecsys.eval.ranking`) stays the default protocol.

Protocol, per evaluable user of `stage`:
  candidates = the user's targets + `n_negatives` items drawn uniformly without
               replacement from the items that are neither in the user's history for
               `stage` (train; train + valid for test) nor targets; padding 0 never.
  Negatives come from `numpy.random.default_rng([seed, user])`, so a user's negatives
  do not depend on which other users are evaluated, on chunking, or on call order.
  Ranking is by score, and a target that ties a negative ranks *below* it (pessimistic),
  so a constant scorer earns 0, not a perfect score.
  A user with fewer than `n_negatives` eligible items gets all of them; how many users
  that happened to is `n_short_users` on the result.

>>> # res = evaluate_sampled(score_fn(model), split, "test"); res["sampled100_ndcg@10"]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrecsys.data.splits import SplitData
from genrecsys.eval.metrics import ranking_metrics
from genrecsys.eval.ranking import RankingResult, ScoreFn, pad_left


@dataclass
class SampledResult(RankingResult):
    n_negatives: int = 100
    seed: int = 0
    n_short_users: int = 0  # users with fewer than n_negatives eligible negatives


def sampled_prefix(n_negatives: int) -> str:
    return f"sampled{n_negatives}_"


def sample_negatives(n_items: int, exclude: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct items from 1..n_items outside `exclude`, uniformly (all of them if fewer)."""
    excl = np.unique(exclude[(exclude > 0) & (exclude <= n_items)])
    n_avail = n_items - len(excl)
    if n_avail < 2 * n:  # dense exclusion (or too few items): enumerate the eligible ones
        pool = np.setdiff1d(np.arange(1, n_items + 1), excl, assume_unique=True)
        return rng.choice(pool, size=min(n, len(pool)), replace=False) if len(pool) else pool
    got = np.zeros(0, dtype=np.int64)
    while len(got) < n:  # rejection: first distinct draws outside `excl` form a uniform subset
        draw = rng.integers(1, n_items + 1, size=2 * n)
        draw = np.concatenate([got, draw[~np.isin(draw, excl)]])
        _, first = np.unique(draw, return_index=True)
        got = draw[np.sort(first)]
    return got[:n]


def evaluate_sampled(score_fn: ScoreFn, split: SplitData, stage: str, ks: tuple[int, ...] = (1, 5, 10, 20), *,
                     n_negatives: int = 100, seed: int = 0, max_len: int = 50, batch_users: int = 1024,
                     max_scores: int = 32_000_000, users: np.ndarray | None = None) -> SampledResult:
    """Rank each user's targets among `n_negatives` sampled negatives (see module doc).

    `score_fn` is the full-ranking one: (users (B,), histories (B, L)) -> (B, n_items + 1).
    """
    import torch

    history = split.history(stage)
    targets = split.targets(stage)
    eval_users = split.eval_users(stage) if users is None else np.asarray(users)
    n_pos = targets.lengths()[eval_users]
    negatives, n_short = [], 0
    for u in eval_users:
        t = targets.of(u)
        neg = sample_negatives(split.n_items, np.concatenate([history.of(u), t]), n_negatives,
                               np.random.default_rng([seed, int(u)]))
        n_short += len(neg) < n_negatives
        negatives.append(neg)
    width = int(n_pos.max(initial=0)) + n_negatives
    cand = np.zeros((len(eval_users), width), dtype=np.int64)  # (U, C); 0 = empty slot
    is_target = np.zeros((len(eval_users), width), dtype=bool)
    for row, u in enumerate(eval_users):
        t, neg = targets.of(u), negatives[row]
        cand[row, :len(t)] = t
        is_target[row, :len(t)] = True
        cand[row, len(t):len(t) + len(neg)] = neg

    k_max = max(ks)
    all_hits = np.zeros((len(eval_users), k_max), dtype=bool)
    chunk = max(1, min(batch_users, max_scores // (split.n_items + 1)))
    with torch.no_grad():
        for start in range(0, len(eval_users), chunk):
            rows = slice(start, start + chunk)
            batch = eval_users[rows]
            full = torch.as_tensor(score_fn(batch, pad_left(history, batch, max_len)), dtype=torch.float32)  # (B, I+1)
            picked = torch.gather(full, 1, torch.as_tensor(cand[rows], device=full.device))  # (B, C)
            scores = picked.cpu().numpy().astype(np.float64)
            scores[cand[rows] == 0] = -np.inf
            order = _order(scores, is_target[rows])  # descending score, tied targets last
            ranked = np.take_along_axis(is_target[rows], order, axis=1)[:, :k_max]
            all_hits[rows, :ranked.shape[1]] = ranked
    prefix = sampled_prefix(n_negatives)
    per_user = {prefix + k: v for k, v in ranking_metrics(all_hits, n_pos, ks).items()}
    metrics = {k: float(v.mean()) if len(v) else 0.0 for k, v in per_user.items()}
    return SampledResult(metrics, per_user, eval_users, protocol=f"sampled-{n_negatives}",
                         n_negatives=n_negatives, seed=seed, n_short_users=int(n_short))


def _order(scores: np.ndarray, is_target: np.ndarray) -> np.ndarray:
    """Per row, candidate positions by descending score, non-targets before tied targets."""
    # Stable sort on the tie key first, then a stable sort on the score.
    by_target = np.argsort(is_target, axis=1, kind="stable")
    s = np.take_along_axis(-scores, by_target, axis=1)
    return np.take_along_axis(by_target, np.argsort(s, axis=1, kind="stable"), axis=1)
