"""DIN (Zhou et al., KDD 2018): Deep Interest Network for CTR.

News encoder: pooling (mean of the item's token embeddings). No separate user encoder:
for each candidate c, an activation unit scores every history item h,
a(h, c) = MLP([h; c; h - c; h * c]) (PReLU, no softmax, as in DIN), and the user vector
is sum_h a(h, c) h — so it differs per candidate (interest fusion then applies per
candidate). An MLP over [user vector; candidate; user vector * candidate] gives the
click logit (BCE).

The activation unit's first layer over [h; c; h - c; h * c] is computed as
W_h h + W_c c + W_d (h - c) + W_p (h * c) with W split from one Linear — the same
function, but the h and c terms are computed once per history item / candidate
instead of once per pair.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genrecsys.data.splits import SplitData
from genrecsys.models.news import PooledItems, RankingConfig, RankingRecommender, mlp


@dataclass
class DINConfig(RankingConfig):
    attention_hidden: tuple[int, ...] = (80, 40)  # activation unit (DIN paper)
    hidden: tuple[int, ...] = (200, 80)  # prediction MLP (DIN paper)


class DIN(RankingRecommender):
    Config = DINConfig

    def __init__(self, split: SplitData, config: DINConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        D = c.embedding_size
        self.news = PooledItems(self.inputs, D)
        h1, *rest = c.attention_hidden
        self.att_in = nn.Linear(4 * D, h1)
        self.att_rest = nn.Sequential(nn.PReLU(), mlp([h1, *rest], 0.0, nn.PReLU), nn.Linear(rest[-1] if rest else h1, 1))
        self.head = nn.Sequential(mlp([3 * D, *c.hidden], c.mlp_dropout, nn.PReLU), nn.Linear(c.hidden[-1] if c.hidden else 3 * D, 1))

    def encode_news(self, ids):
        return self.news(ids)

    def activation_first_layer(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """h (B, L, D), c (B, C, D) -> (B, C, L, H1) = Linear([h; c; h - c; h * c])."""
        W_h, W_c, W_d, W_p = self.att_in.weight.chunk(4, dim=1)  # each (H1, D)
        hh = h @ (W_h + W_d).T  # (B, L, H1)
        cc = c @ (W_c - W_d).T + self.att_in.bias  # (B, C, H1)
        hc = (c.unsqueeze(2) * h.unsqueeze(1)) @ W_p.T  # (B, C, L, H1)
        return hc + hh.unsqueeze(1) + cc.unsqueeze(2)

    def interact(self, users, hist, hist_vecs, cand_vecs):
        weights = self.att_rest(self.activation_first_layer(hist_vecs, cand_vecs)).squeeze(-1)  # (B, C, L)
        weights = weights * (hist > 0).unsqueeze(1)
        u = self.fuse(weights @ hist_vecs, users)  # (B, C, D)
        return self.head(torch.cat([u, cand_vecs, u * cand_vecs], dim=-1)).squeeze(-1)
