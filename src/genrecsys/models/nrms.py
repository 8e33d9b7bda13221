"""NRMS (Wu et al., EMNLP 2019): multi-head self-attention news and user encoders.

News encoder: token embeddings (title, then category and subcategory as special tokens,
then the per-item vector token — GENRE's input sequence) -> dropout -> multi-head
self-attention -> dropout -> additive attention (dropout on inputs and outputs, as NRMS;
none on attention weights). User encoder: multi-head self-attention
over the history's news vectors -> additive attention. Score: dot product.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from genrecsys.data.splits import SplitData
from genrecsys.models.news import AdditiveAttention, ItemTokens, MatchingRecommender, NewsConfig, safe_padding


@dataclass
class NRMSConfig(NewsConfig):
    heads: int = 4  # 4 heads of 16 dims at the default 64


class NRMS(MatchingRecommender):
    Config = NRMSConfig

    def __init__(self, split: SplitData, config: NRMSConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        D = c.embedding_size
        self.tokens = ItemTokens(self.inputs, D)
        self.news_attn = nn.MultiheadAttention(D, c.heads, batch_first=True)
        self.news_pool = AdditiveAttention(D)
        self.user_attn = nn.MultiheadAttention(D, c.heads, batch_first=True)
        self.user_pool = AdditiveAttention(D)
        self.drop = nn.Dropout(c.dropout)

    def encode_news(self, ids):
        x, mask = self.tokens(ids)  # (N, S, D), (N, S)
        x = self.drop(x)
        h = self.news_attn(x, x, x, key_padding_mask=safe_padding(~mask), need_weights=False)[0]
        return self.news_pool(self.drop(h), mask)  # (N, D)

    def user_encode(self, users, hist, hist_vecs):
        mask = hist > 0  # (B, L)
        h = self.user_attn(hist_vecs, hist_vecs, hist_vecs, key_padding_mask=safe_padding(~mask), need_weights=False)[0]
        return self.user_pool(self.drop(h), mask)  # (B, D)
