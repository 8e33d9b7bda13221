"""Top-K recommendations for given users from a trained model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.eval.ranking import pad_left


@dataclass
class Recommendation:
    user: str
    items: list[str]
    scores: list[float]
    titles: list[str]


def recommend(model, split: SplitData, users: list[str], k: int = 10, *, stage: str = "test",
              exclude_seen: bool = True, max_len: int = 50) -> list[Recommendation]:
    """Top-k unseen items per raw user id, from the history available at `stage`
    ('test' = train + validation items). Unknown users raise GenrecsysError."""
    import torch

    if k < 1:
        raise GenrecsysError(f"k must be at least 1, got {k}")
    idx = np.array([split.user_index(u) for u in users], dtype=np.int64)
    history = split.history(stage)
    seqs = pad_left(history, idx, max_len)
    model.eval()
    model.on_eval_start()
    with torch.no_grad():
        scores = model.score(torch.as_tensor(idx), torch.as_tensor(seqs)).float().clone()  # (B, I+1)
    scores[:, 0] = -torch.inf
    if exclude_seen:
        for row, u in enumerate(idx):
            scores[row, torch.as_tensor(history.of(u))] = -torch.inf
    k = min(k, split.n_items)
    top = torch.topk(scores, k, dim=1)
    titles = split.dataset.titles()
    out = []
    for row, u in enumerate(users):
        keep = torch.isfinite(top.values[row])
        items = [str(split.item_ids[i]) for i in top.indices[row][keep].tolist()]
        out.append(Recommendation(str(u), items, top.values[row][keep].tolist(), [titles.get(i, "") for i in items]))
    return out
