"""NAML (Wu et al., IJCAI 2019): attentive multi-view news encoder.

Views: title (CNN over word embeddings -> additive attention; GENRE appends the per-item
vector token to the title), abstract (its own CNN + attention, when abstracts are used),
category and subcategory (mean of their embeddings -> dense + ReLU). A view-level
additive attention combines the views present for an item. User encoder: additive
attention over the history's news vectors. Score: dot product.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genrecsys.data.splits import SplitData
from genrecsys.models.news import AdditiveAttention, ItemTokens, MatchingRecommender, NewsConfig, masked_mean


@dataclass
class NAMLConfig(NewsConfig):
    window: int = 3  # CNN window over word pieces


class _TextView(nn.Module):
    def __init__(self, dim: int, window: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, window, padding=window // 2)
        self.pool = AdditiveAttention(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(self.drop(x).transpose(1, 2))).transpose(1, 2)  # (N, S, D)
        return self.pool(self.drop(h), mask)


class NAML(MatchingRecommender):
    Config = NAMLConfig

    def __init__(self, split: SplitData, config: NAMLConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        D = c.embedding_size
        self.tokens = ItemTokens(self.inputs, D)
        self.title = _TextView(D, c.window, c.dropout)
        self.abstract = _TextView(D, c.window, c.dropout) if c.text.abstract_tokens else None
        self.category = nn.Sequential(nn.Linear(D, D), nn.ReLU())
        self.subcategory = nn.Sequential(nn.Linear(D, D), nn.ReLU())
        self.view_pool = AdditiveAttention(D)
        self.user_pool = AdditiveAttention(D)

    def encode_news(self, ids):
        views, present = [], []
        x, mask = self.tokens(ids, ("title",), vector=True)
        views.append(self.title(x, mask))
        present.append(mask.any(1))
        if self.abstract is not None:
            x, mask = self.tokens(ids, ("abstract",), vector=False)
            views.append(self.abstract(x, mask))
            present.append(mask.any(1))
        for name, dense in (("category", self.category), ("subcategory", self.subcategory)):
            x, mask = self.tokens(ids, (name,), vector=False)
            views.append(dense(masked_mean(x, mask)))
            present.append(mask.any(1))
        v, m = torch.stack(views, 1), torch.stack(present, 1)  # (N, V, D), (N, V)
        return self.view_pool(v, m)

    def user_encode(self, users, hist, hist_vecs):
        return self.user_pool(hist_vecs, hist > 0)
