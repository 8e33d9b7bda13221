"""DCN (Wang et al., ADKDD 2017): Deep & Cross Network for CTR.

News encoder: pooling (mean of the item's token embeddings); user encoder: pooling
(mean of the history's news vectors). The input x0 = [user vector; candidate vector]
goes through a cross network, x_{l+1} = x0 (x_l . w_l) + b_l + x_l, and a deep MLP in
parallel; a linear layer over both outputs gives the click logit (BCE).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genrecsys.data.splits import SplitData
from genrecsys.models.news import PooledItems, RankingConfig, RankingRecommender, masked_mean, mlp


@dataclass
class DCNConfig(RankingConfig):
    cross_layers: int = 3


class CrossNetwork(nn.Module):
    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(layers, dim) * dim ** -0.5)
        self.b = nn.Parameter(torch.zeros(layers, dim))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.w, self.b):
            x = x0 * (x @ w).unsqueeze(-1) + b + x  # (..., dim)
        return x


class DCN(RankingRecommender):
    Config = DCNConfig

    def __init__(self, split: SplitData, config: DCNConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        D = c.embedding_size
        self.news = PooledItems(self.inputs, D)
        self.cross = CrossNetwork(2 * D, c.cross_layers)
        self.deep = mlp([2 * D, *c.hidden], c.mlp_dropout)
        self.out = nn.Linear(2 * D + (c.hidden[-1] if c.hidden else 2 * D), 1)

    def encode_news(self, ids):
        return self.news(ids)

    def interact(self, users, hist, hist_vecs, cand_vecs):
        u = self.fuse(masked_mean(hist_vecs, hist > 0), users)  # (B, D)
        x0 = torch.cat([u.unsqueeze(1).expand_as(cand_vecs), cand_vecs], dim=-1)  # (B, C, 2D)
        return self.out(torch.cat([self.cross(x0), self.deep(x0)], dim=-1)).squeeze(-1)
