"""Full-ranking evaluation: every catalog item is a candidate.

Items the user already saw are masked (training items for validation; training and
validation items for test) unless `mask_seen=False`. Users are scored in chunks
sized so that one chunk's score matrix stays under `max_scores` floats, which bounds
memory on large catalogs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from genrecsys.data.splits import Part, SplitData
from genrecsys.eval.metrics import ranking_metrics

# (users (B,), left-padded histories (B, L)) -> scores (B, n_items + 1)
ScoreFn = Callable[[np.ndarray, np.ndarray], "object"]


@dataclass
class RankingResult:
    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]  # metric -> (n_eval_users,)
    users: np.ndarray  # user indices, aligned with per_user
    protocol: str = "full"

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
                     max_scores: int = 32_000_000, users: np.ndarray | None = None) -> RankingResult:
    """Score all items for every evaluable user of `stage` and compute ranking metrics."""
    import torch

    history = split.history(stage)
    targets = split.targets(stage)
    eval_users = split.eval_users(stage) if users is None else np.asarray(users)
    n_cols = split.n_items + 1
    chunk = max(1, min(batch_users, max_scores // n_cols))
    k_max = min(max(ks), split.n_items)
    all_hits = np.zeros((len(eval_users), max(ks)), dtype=bool)
    n_pos = targets.lengths()[eval_users]
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
            hits = np.take_along_axis(target_mask, top, axis=1) & torch.isfinite(top_v).numpy()
            all_hits[start:start + len(batch), :k_max] = hits
    per_user = ranking_metrics(all_hits, n_pos, ks)
    return RankingResult({k: float(v.mean()) if len(v) else 0.0 for k, v in per_user.items()}, per_user, eval_users)


def _rows_cols(part: Part, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lens = part.lengths()[users]
    rows = np.repeat(np.arange(len(users)), lens)
    cols = np.concatenate([part.of(u) for u in users]) if len(users) else np.zeros(0, dtype=np.int64)
    return rows, cols.astype(np.int64)
