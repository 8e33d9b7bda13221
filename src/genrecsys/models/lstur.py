"""LSTUR (An et al., ACL 2019): long- and short-term user representations.

News encoder: CNN over the item's token sequence (title, category, subcategory and
vector tokens, as GENRE feeds every model) -> additive attention. User encoder (the
LSTUR-ini variant): a GRU over the history's news vectors whose initial state is the
user's long-term embedding; during training that embedding is masked (zeroed) with
probability `long_term_mask` so the model also learns users it knows little about.
Score: dot product with the GRU's last state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from genrecsys.data.splits import SplitData
from genrecsys.models.news import AdditiveAttention, ItemTokens, MatchingRecommender, NewsConfig


@dataclass
class LSTURConfig(NewsConfig):
    window: int = 3
    long_term_mask: float = 0.5  # LSTUR's mask probability of the long-term user embedding


def right_align(hist: torch.Tensor, vecs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (B, L) ids / (B, L, D) vectors -> right-padded vectors and lengths (>= 1)."""
    B, L = hist.shape
    lengths = (hist > 0).sum(1)
    idx = (torch.arange(L, device=hist.device)[None, :] + (L - lengths)[:, None]) % L  # (B, L)
    return torch.gather(vecs, 1, idx.unsqueeze(-1).expand_as(vecs)), lengths.clamp(min=1)


class LSTUR(MatchingRecommender):
    Config = LSTURConfig

    def __init__(self, split: SplitData, config: LSTURConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        D = c.embedding_size
        self.tokens = ItemTokens(self.inputs, D)
        self.conv = nn.Conv1d(D, D, c.window, padding=c.window // 2)
        self.news_pool = AdditiveAttention(D)
        self.drop = nn.Dropout(c.dropout)
        self.user_emb = nn.Embedding(self.n_users, D)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        self.gru = nn.GRU(D, D, batch_first=True)

    def encode_news(self, ids):
        x, mask = self.tokens(ids)
        h = torch.relu(self.conv(self.drop(x).transpose(1, 2))).transpose(1, 2)  # (N, S, D)
        return self.news_pool(self.drop(h), mask)

    def user_encode(self, users, hist, hist_vecs):
        long_term = self.user_emb(users)  # (B, D)
        if self.training and self.config.long_term_mask > 0:
            keep = torch.rand(len(users), 1, device=users.device) >= self.config.long_term_mask
            long_term = long_term * keep
        seq, lengths = right_align(hist, hist_vecs)
        packed = pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed, long_term.unsqueeze(0).contiguous())
        return h[0]  # (B, D)
