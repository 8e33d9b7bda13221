"""PNN (Qu et al., ICDM 2016), the inner-product variant (IPNN), for CTR.

News encoder: pooling (mean of the item's token embeddings); user encoder: pooling (mean
of the history's news vectors). The fields are the user vector and the candidate vector;
the product layer feeds the MLP their linear signal (both vectors) and the inner
products of every field pair (here: one), and the MLP gives the click logit (BCE).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genrecsys.data.splits import SplitData
from genrecsys.models.news import PooledItems, RankingConfig, RankingRecommender, masked_mean, mlp


@dataclass
class PNNConfig(RankingConfig):
    pass


def pairwise_inner_products(fields: torch.Tensor) -> torch.Tensor:
    """(..., F, D) -> (..., F(F-1)/2): <f_i, f_j> for i < j."""
    F_ = fields.shape[-2]
    i, j = torch.triu_indices(F_, F_, offset=1, device=fields.device)
    return (fields[..., i, :] * fields[..., j, :]).sum(-1)


class PNN(RankingRecommender):
    Config = PNNConfig

    def __init__(self, split: SplitData, config: PNNConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        D = c.embedding_size
        self.news = PooledItems(self.inputs, D)
        n_fields = 2
        width = n_fields * D + n_fields * (n_fields - 1) // 2
        self.head = nn.Sequential(mlp([width, *c.hidden], c.mlp_dropout), nn.Linear(c.hidden[-1] if c.hidden else width, 1))

    def encode_news(self, ids):
        return self.news(ids)

    def interact(self, users, hist, hist_vecs, cand_vecs):
        u = self.fuse(masked_mean(hist_vecs, hist > 0), users)  # (B, D)
        fields = torch.stack([u.unsqueeze(1).expand_as(cand_vecs), cand_vecs], dim=-2)  # (B, C, 2, D)
        z = fields.flatten(-2)  # linear signal (B, C, 2D)
        p = pairwise_inner_products(fields)  # (B, C, 1)
        return self.head(torch.cat([z, p], dim=-1)).squeeze(-1)
