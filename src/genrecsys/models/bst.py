"""BST (Chen et al., DLP-KDD 2019): Behavior Sequence Transformer for CTR.

News encoder: pooling (mean of the item's token embeddings). The behaviour sequence
(history news vectors + learned positions) and the candidate (at the position after the
newest item) go through 3 Transformer blocks (GENRE §4.1); the candidate's output, the
pooled history output (the user vector, where interest fusion applies) and the
candidate's news vector feed an MLP that gives the click logit (BCE).

Deviations, for CPU cost: history tokens attend to each other but not to the candidate
(the candidate attends to the history and itself), so the history's encoding is shared
by every candidate of an impression instead of recomputed per candidate; and the
outputs are pooled rather than flattened into the MLP.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genrecsys.data.splits import SplitData
from genrecsys.models.news import PooledItems, RankingConfig, RankingRecommender, TransformerBlock, masked_mean, mlp


@dataclass
class BSTConfig(RankingConfig):
    max_history: int = 20  # BST's behaviour sequence length (Chen et al. §3)
    layers: int = 3  # GENRE §4.1
    heads: int = 4


class BST(RankingRecommender):
    Config = BSTConfig

    def __init__(self, split: SplitData, config: BSTConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        D = c.embedding_size
        self.news = PooledItems(self.inputs, D)
        self.pos = nn.Embedding(c.max_history + 1, D)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.blocks = nn.ModuleList(TransformerBlock(D, c.heads, c.dropout) for _ in range(c.layers))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Sequential(mlp([3 * D, *c.hidden], c.mlp_dropout), nn.Linear(c.hidden[-1] if c.hidden else 3 * D, 1))

    def encode_news(self, ids):
        return self.news(ids)

    def interact(self, users, hist, hist_vecs, cand_vecs):
        L = hist.shape[1]
        pad = hist == 0
        x = hist_vecs + self.pos.weight[-L - 1:-1]  # (B, L, D)
        t = cand_vecs + self.pos.weight[-1]  # (B, C, D)
        for block in self.blocks:
            t = block.attend(t, x, pad)  # reads the history at this block's input
            x = block(x, pad)
        x, t = self.norm(x), self.norm(t)
        u = self.fuse(masked_mean(x, ~pad), users)  # (B, D)
        feats = torch.cat([t, u.unsqueeze(1).expand_as(t), cand_vecs], dim=-1)  # (B, C, 3D)
        return self.head(feats).squeeze(-1)  # (B, C)
