"""Most-popular baseline: every user gets items ranked by training interaction count."""
from __future__ import annotations

import numpy as np
import torch

from genrecsys.data.splits import SplitData
from genrecsys.models.base import Recommender


class Pop(Recommender):
    trainable = False

    def __init__(self, split: SplitData, config=None) -> None:
        super().__init__(split, config)
        self.register_buffer("counts", torch.zeros(self.n_items + 1))

    def fit_closed_form(self, split: SplitData) -> None:
        counts = np.bincount(split.train.items, minlength=self.n_items + 1).astype(np.float32)
        self.counts.copy_(torch.from_numpy(counts))

    def reads_users(self) -> bool:
        return False

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(len(users), -1)  # (B, I+1)
