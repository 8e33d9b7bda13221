"""BPR-MF (Rendle et al., 2009): user and item embeddings, pairwise BPR loss with one
uniformly sampled unseen negative per training interaction."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.batches import pair_batches
from genrecsys.data.splits import SplitData
from genrecsys.models.base import Recommender


@dataclass
class BPRConfig:
    embedding_size: int = 64
    n_negatives: int = 4  # negatives per positive; the loss averages over them (4 beat 1 on ML-100K validation)


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(pos - neg), averaged."""
    return -F.logsigmoid(pos - neg).mean()


class BPR(Recommender):
    Config = BPRConfig
    default_lr = 5e-3
    default_batch_size = 2048

    def __init__(self, split: SplitData, config: BPRConfig | None = None) -> None:
        super().__init__(split, config)
        d = self.config.embedding_size
        self.user_emb = nn.Embedding(self.n_users, d)
        self.item_emb = nn.Embedding(self.n_items + 1, d)
        nn.init.xavier_normal_(self.user_emb.weight)
        nn.init.xavier_normal_(self.item_emb.weight)

    def batches(self, split, batch_size, rng: np.random.Generator):
        return pair_batches(split, batch_size, rng, n_neg=self.config.n_negatives)

    def loss(self, batch):
        u = self.user_emb(batch["users"])  # (B, D)
        pos = (u * self.item_emb(batch["pos"])).sum(-1)  # (B,)
        neg = batch["neg"].view(len(u), -1)  # (B, N)
        neg = (u.unsqueeze(1) * self.item_emb(neg)).sum(-1)
        return bpr_loss(pos.unsqueeze(1), neg)

    def score(self, users, seqs):
        return self.user_emb(users) @ self.item_emb.weight.T  # (B, I+1)
