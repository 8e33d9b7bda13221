"""Full-ranking evaluation: every catalog item is a candidate.

Items the user already saw are masked (training items for validation; training and
validation items for test) unless `mask_seen=False`. Users are scored in chunks
sized so that one chunk's score matrix stays under `max_scores` floats, which bounds
memory on large catalogs.

Long-tail slice (`longtail_max_train=N`): an item is in the long tail when it has at
most N interactions in `split.train` (repeats counted; items never seen in training
count 0). The count is taken on the training part for both stages, so the slice of a
split is fixed. A user is in the slice when at least one of their targets is a tail
item, and on the slice only tail targets count as relevant: the ranked list is the
same as for the overall metrics, a head target in it is an ordinary miss, and NDCG's
ideal DCG counts tail targets only. Under leave-one-out (one target) this is simply
the users whose target is a tail item. Reported as `longtail_hit@k` and
`longtail_ndcg@k` (means over the slice) and `longtail_users` (its size); with an
empty slice the two means are left out (an undefined mean is not written as a
number) while `longtail_users` says 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from genrecsys.data.splits import Part, SplitData
from genrecsys.eval.metrics import hit_at_k, ndcg_at_k, ranking_metrics

# (users (B,), left-padded histories (B, L)) -> scores (B, n_items + 1)
ScoreFn = Callable[[np.ndarray, np.ndarray], "object"]


LONGTAIL = "longtail"  # per_user key of slice membership, and prefix of the slice's metrics
LONGTAIL_METRICS = ("hit", "ndcg")


@dataclass
class RankingResult:
    metrics: dict[str, float]
    # metric -> (n_eval_users,). With the long-tail slice on, also per_user["longtail"]
    # (bool membership) and longtail_* metrics that are NaN for users outside the slice.
    per_user: dict[str, np.ndarray]
    users: np.ndarray  # user indices, aligned with per_user
    protocol: str = "full"
    # (n_eval_users, k) the ranked top-k item indices (-1 where fewer items were unmasked),
    # kept so beyond-accuracy metrics read the lists instead of scoring every user again
    lists: np.ndarray | None = None

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]


def pad_left(part: Part, users: np.ndarray, length: int) -> np.ndarray:
    """Last `length` items of each user's list, right-aligned, 0-padded on the left."""
    out = np.zeros((len(users), length), dtype=np.int64)
    for row, u in enumerate(users):
        seq = part.of(u)[-length:]
        if len(seq):
            out[row, length - len(seq):] = seq
    return out


def evaluate_ranking(score_fn: ScoreFn, split: SplitData, stage: str, ks: tuple[int, ...] = (1, 5, 10, 20), *,
                     mask_seen: bool = True, max_len: int = 50, batch_users: int = 1024,
                     max_scores: int = 32_000_000, users: np.ndarray | None = None,
                     longtail_max_train: int | None = None) -> RankingResult:
    """Score all items for every evaluable user of `stage` and compute ranking metrics,
    plus the long-tail slice (see the module docstring) when `longtail_max_train` is set.

    >>> # res = evaluate_ranking(score_fn(model), split, "test", (10,), longtail_max_train=5)
    >>> # res["ndcg@10"], res["longtail_ndcg@10"], res["longtail_users"]
    """
    import torch

    history = split.history(stage)
    targets = split.targets(stage)
    eval_users = split.eval_users(stage) if users is None else np.asarray(users)
    n_cols = split.n_items + 1
    chunk = max(1, min(batch_users, max_scores // n_cols))
    k_max = min(max(ks), split.n_items)
    all_hits = np.zeros((len(eval_users), max(ks)), dtype=bool)
    lists = np.full((len(eval_users), k_max), -1, dtype=np.int64)
    n_pos = targets.lengths()[eval_users]
    tail = None if longtail_max_train is None else longtail_items(split.train, split.n_items, longtail_max_train)
    tail_hits = np.zeros_like(all_hits) if tail is not None else None
    with torch.no_grad():
        for start in range(0, len(eval_users), chunk):
            batch = eval_users[start:start + chunk]
            seqs = pad_left(history, batch, max_len)
            scores = torch.as_tensor(score_fn(batch, seqs), dtype=torch.float32).clone()  # (B, I+1)
            scores[:, 0] = -torch.inf
            if mask_seen:
                rows, cols = _rows_cols(history, batch)
                scores[rows, cols] = -torch.inf
            top_v, top_i = torch.topk(scores, k_max, dim=1)  # (B, k_max)
            top = top_i.numpy()
            target_mask = np.zeros((len(batch), n_cols), dtype=bool)
            rows, cols = _rows_cols(targets, batch)
            target_mask[rows, cols] = True
            # a masked item (-inf) can reach the top k only when fewer than k items are unmasked
            finite = torch.isfinite(top_v).numpy()
            hits = np.take_along_axis(target_mask, top, axis=1) & finite
            lists[start:start + len(batch)] = np.where(finite, top, -1)
            all_hits[start:start + len(batch), :k_max] = hits
            if tail is not None:
                tail_hits[start:start + len(batch), :k_max] = hits & tail[top]
    per_user = ranking_metrics(all_hits, n_pos, ks)
    metrics = {k: float(v.mean()) if len(v) else 0.0 for k, v in per_user.items()}
    if tail is not None:
        n_tail = np.bincount(targets.users(), weights=tail[targets.items], minlength=split.n_users)
        slice_values = longtail_metrics(tail_hits, n_tail[eval_users].astype(np.int64), ks)
        members = slice_values.pop(LONGTAIL)
        metrics[f"{LONGTAIL}_users"] = float(members.sum())
        if members.any():
            metrics |= {k: float(v[members].mean()) for k, v in slice_values.items()}
        per_user |= {LONGTAIL: members, **slice_values}
    return RankingResult(metrics, per_user, eval_users, lists=lists)


def top_k_lists(score_fn: ScoreFn, split: SplitData, stage: str, k: int = 10, *, mask_seen: bool = True,
                max_len: int = 50, batch_users: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The lists the evaluator ranks: (eval users (U,), their top-k item indices (U, k)),
    seen items masked as in `evaluate_ranking`; -1 pads a list when fewer items remain."""
    import torch

    history = split.history(stage)
    users = split.eval_users(stage)
    k = min(k, split.n_items)
    out = np.full((len(users), k), -1, dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(users), batch_users):
            batch = users[start:start + batch_users]
            scores = torch.as_tensor(score_fn(batch, pad_left(history, batch, max_len)), dtype=torch.float32).clone()
            scores[:, 0] = -torch.inf
            if mask_seen:
                rows, cols = _rows_cols(history, batch)
                scores[rows, cols] = -torch.inf
            top_v, top_i = torch.topk(scores, k, dim=1)  # (B, k)
            out[start:start + len(batch)] = np.where(torch.isfinite(top_v).numpy(), top_i.numpy(), -1)
    return users, out


def longtail_items(train: Part, n_items: int, max_train: int) -> np.ndarray:
    """(n_items + 1,) bool: items with at most `max_train` rows in `train`; never column 0.

    >>> part = Part(np.array([0, 3]), np.array([1, 1, 2]))
    >>> longtail_items(part, 3, 1).tolist()  # item 1 seen twice, 2 once, 3 never
    [False, False, True, True]
    """
    tail = np.bincount(train.items, minlength=n_items + 1) <= max_train
    tail[0] = False  # padding is no item
    return tail


def longtail_metrics(tail_hits: np.ndarray, n_tail: np.ndarray, ks: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per-user slice metrics from hits on tail targets only (`tail_hits`, as in
    eval.metrics) and each user's number of tail targets: {"longtail": membership,
    "longtail_hit@k": ..., "longtail_ndcg@k": ...}, NaN outside the slice so that a
    mean over users never counts a non-member as a miss.

    >>> hits = np.array([[False, True], [False, False]])
    >>> out = longtail_metrics(hits, np.array([1, 0]), (2,))
    >>> out["longtail"].tolist(), out["longtail_hit@2"].tolist()
    ([True, False], [1.0, nan])
    """
    members = n_tail > 0
    out: dict[str, np.ndarray] = {LONGTAIL: members}
    for k in ks:
        values = {"hit": hit_at_k(tail_hits, k), "ndcg": ndcg_at_k(tail_hits, n_tail, k)}
        for name in LONGTAIL_METRICS:
            out[f"{LONGTAIL}_{name}@{k}"] = np.where(members, values[name], np.nan)
    return out


def _rows_cols(part: Part, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lens = part.lengths()[users]
    rows = np.repeat(np.arange(len(users)), lens)
    cols = np.concatenate([part.of(u) for u in users]) if len(users) else np.zeros(0, dtype=np.int64)
    return rows, cols.astype(np.int64)
