"""HSTU (Zhai et al., ICML'24, "Actions Speak Louder than Words"): Hierarchical
Sequential Transduction Units, a causal encoder over the item sequence whose
attention is pointwise (SiLU, no softmax) and biased by relative position and time.

Each layer, with X the (B, L, D) states:

    U, V, Q, K = split(SiLU(f1(LayerNorm(X))))
    A = SiLU(Q K^T + rab) / n        causal, padding keys masked, rab = position + time bias
    X <- X + f2(dropout(LayerNorm(A V) * U))

Implemented as in the reference code (meta-recsys/generative-recommenders, research/):
per-layer relative attention bias shared by the heads, no 1/sqrt(d) scaling, dropout
on f2's input, learned absolute positions added to the scaled item embeddings.

Simplified or changed relative to the paper / reference:
- padded dense tensors instead of jagged ones, and plain PyTorch instead of Triton kernels;
- full-softmax cross-entropy at every position of the training windows, scored from
  the last position, with a final LayerNorm and dot product against the shared item
  table — our SASRec's recipe (`NextItemRecommender`), instead of sampled softmax over
  L2-normalised embeddings;
- relative positions are bucketed (T5-style: exact near, log-spaced far) instead of
  one bias per distance;
- the time bias of query i and key j buckets |t_i - t_j|, the query item's own time;
  the reference uses the *next* item's time (the request time, known in production),
  but `score` only sees the history, so training and scoring use the same definition;
- timestamps are looked up by (user, item) from the dataset (`InteractionTimes`),
  so a re-consumed item gets its latest timestamp at every position.

>>> from genrecsys.config import ExperimentConfig
>>> cfg = ExperimentConfig(model="hstu", model_params={"n_layers": 2, "n_time_buckets": 128})
>>> # run_experiment(cfg, "runs/hstu")   # see genrecsys.experiment
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.sasrec import NextItemRecommender
from genrecsys.reasoning.fusion import item_table, side_layers

# The reference's time buckets: floor(ln(max(|dt|, 1 s)) / 0.301), so each bucket spans a
# factor e^0.301 ~ 1.35 of time: 0 or 1 s -> 0, 2 s -> 2, 1 min -> 13, 1 h -> 27, 1 day -> 37,
# 1 year -> 57. Buckets past n_time_buckets share the last one.
TIME_BUCKET_WIDTH = 0.301


@dataclass
class HSTUConfig:
    embedding_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    max_len: int = 50
    n_position_buckets: int = 32  # relative distances 0..15 exact, 16..max_len-1 in 16 log-spaced buckets
    n_time_buckets: int = 128  # the reference's count (see TIME_BUCKET_WIDTH); +1 weight for the overflow
    user_text: str | None = None  # RELAND: .npy (U+1, d_text) rationale vectors, user u = row u+1; None = ID only
    user_fusion: str = "attention"  # RELAND fusion: attention (Eq. 5) | gated (zero-init residual gate)
    item_text: str | None = None  # "+f_item": .npy (I+1, d_text) item text vectors; None = ID only

    def __post_init__(self) -> None:
        sizes = {"embedding_size": self.embedding_size, "n_layers": self.n_layers, "n_heads": self.n_heads,
                 "max_len": self.max_len, "n_position_buckets": self.n_position_buckets,
                 "n_time_buckets": self.n_time_buckets}
        for name, value in sizes.items():
            if value < 1:
                raise GenrecsysError(f"hstu: {name} must be >= 1, got {value}")
        if self.embedding_size % self.n_heads:
            raise GenrecsysError(f"hstu: embedding_size ({self.embedding_size}) must be divisible by "
                                 f"n_heads ({self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise GenrecsysError(f"hstu: dropout must be in [0, 1), got {self.dropout}")


def pointwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rab: torch.Tensor,
                        allowed: torch.Tensor, n: int) -> torch.Tensor:
    """HSTU's attention: (B, H, L, dk) q, k, (B, H, L, dv) v, (B, L, L) bias, (B, L, L) bool
    visible keys -> (B, H, L, dv).

    SiLU instead of softmax, divided by a constant n (the model's max_len, as the reference
    divides by the padded length) rather than by the number of visible keys: the weights
    do not sum to 1, so how much a user engaged stays in the output's magnitude — the
    paper's reason for dropping softmax. A constant also keeps the output independent of
    how much padding precedes a sequence.
    """
    a = F.silu(q @ k.transpose(-1, -2) + rab[:, None]) / n  # (B, H, L, L)
    return (a * allowed[:, None]) @ v  # masked after the SiLU: SiLU(-inf) would be NaN


def visible_keys(seqs: torch.Tensor) -> torch.Tensor:
    """(B, L) item ids, 0 = padding -> (B, L, L) bool: query i sees the real keys j <= i.
    A padding query sees nothing, which is safe here: without softmax its row is just 0."""
    L = seqs.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=seqs.device).tril()  # (L, L)
    return causal & (seqs > 0)[:, None, :]


def position_buckets(L: int, n_buckets: int, max_len: int) -> torch.Tensor:
    """(L, L) bucket of the distance i - j between query i and key j (clamped at 0: later
    keys are masked anyway). Distances below n_buckets // 2 get a bucket each, longer ones
    share log-spaced buckets up to max_len (T5's scheme, one-sided since HSTU is causal)."""
    d = (torch.arange(L)[:, None] - torch.arange(L)[None, :]).clamp(min=0)  # (L, L)
    exact = max(n_buckets // 2, 1)
    if max_len <= exact:
        return d.clamp(max=n_buckets - 1)
    far = exact + (torch.log(d.clamp(min=exact) / exact) / math.log(max_len / exact) * (n_buckets - exact)).long()
    return torch.where(d < exact, d, far).clamp(max=n_buckets - 1)


def time_buckets(times: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """(B, L) int64 timestamps -> (B, L, L) bucket of |t_i - t_j| (see TIME_BUCKET_WIDTH)."""
    dt = (times[:, :, None] - times[:, None, :]).abs().clamp(min=1)  # (B, L, L) int64: exact differences
    return (torch.log(dt.double()) / TIME_BUCKET_WIDTH).long().clamp(max=n_buckets)


class InteractionTimes(nn.Module):
    """(user index, item index) -> timestamp of the user's latest interaction with the item,
    0 when the pair is unknown (then the time bias is the same for every pair of such items).

    `score` receives only item ids, so the times come from `split.dataset.interactions`,
    held as sorted keys `user * (n_items + 1) + item` searched on the model's device. The
    tables are non-persistent buffers: they are rebuilt from the split, not saved.
    """

    def __init__(self, split: SplitData) -> None:
        super().__init__()
        inter = split.dataset.interactions
        users = pd.Index(split.user_ids).get_indexer(inter["user"].to_numpy())  # -1 = not in the split
        items = pd.Index(split.item_ids).get_indexer(inter["item"].to_numpy())
        keep = (users >= 0) & (items > 0)
        self.stride = split.n_items + 1
        keys = users[keep].astype(np.int64) * self.stride + items[keep]
        times = inter["timestamp"].to_numpy(np.int64)[keep]
        order = np.lexsort((times, keys))  # by key, then time: a key's latest time is its last row
        keys, times = keys[order], times[order]
        last = np.r_[keys[1:] != keys[:-1], True] if len(keys) else np.zeros(0, bool)
        self.register_buffer("keys", torch.from_numpy(keys[last]), persistent=False)  # (P,) sorted, unique
        self.register_buffer("times", torch.from_numpy(times[last]), persistent=False)  # (P,) int64

    def forward(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        """(B,) user indices, (B, L) item ids -> (B, L) int64 timestamps."""
        if len(self.keys) == 0:
            return torch.zeros_like(seqs)
        q = users[:, None].long() * self.stride + seqs  # (B, L)
        pos = torch.searchsorted(self.keys, q).clamp(max=len(self.keys) - 1)  # (B, L)
        return torch.where(self.keys[pos] == q, self.times[pos], torch.zeros_like(q))


class HSTULayer(nn.Module):
    """One HSTU block with its own relative attention bias (see the module docstring)."""

    def __init__(self, c: HSTUConfig) -> None:
        super().__init__()
        self.n_heads, self.n = c.n_heads, c.max_len
        self.f1 = nn.Linear(c.embedding_size, 4 * c.embedding_size, bias=False)  # -> U, V, Q, K
        self.f2 = nn.Linear(c.embedding_size, c.embedding_size)
        self.pos_bias = nn.Parameter(torch.empty(c.n_position_buckets))
        self.time_bias = nn.Parameter(torch.empty(c.n_time_buckets + 1))
        self.drop = nn.Dropout(c.dropout)
        for w in (self.f1.weight, self.pos_bias, self.time_bias):
            nn.init.normal_(w, std=0.02)  # the reference's init
        nn.init.xavier_uniform_(self.f2.weight)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, pos_b: torch.Tensor, time_b: torch.Tensor) -> torch.Tensor:
        """(B, L, D) states, (B, L, L) visible keys, (L, L) and (B, L, L) buckets -> (B, L, D)."""
        B, L, D = x.shape
        u, v, q, k = F.silu(self.f1(F.layer_norm(x, (D,)))).chunk(4, dim=-1)  # 4 x (B, L, D)
        rab = self.pos_bias[pos_b] + self.time_bias[time_b]  # (B, L, L)
        q, k, v = (t.view(B, L, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, L, D/H) each
        av = pointwise_attention(q, k, v, rab, allowed, self.n)  # (B, H, L, D/H)
        av = av.transpose(1, 2).reshape(B, L, D)
        return x + self.f2(self.drop(F.layer_norm(av, (D,)) * u))


class HSTU(NextItemRecommender):
    Config = HSTUConfig
    default_lr = 1e-3
    default_batch_size = 128
    windows_carry_users = True  # training windows need their user to look up timestamps

    def __init__(self, split: SplitData, config: HSTUConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        self.item_emb = nn.Embedding(self.n_items + 1, c.embedding_size, padding_idx=0)
        self.pos_emb = nn.Embedding(c.max_len, c.embedding_size)
        self.layers = nn.ModuleList(HSTULayer(c) for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.embedding_size)
        self.drop = nn.Dropout(c.dropout)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.times = InteractionTimes(split)
        # only distances matter, so a shorter window uses the bottom-right corner
        self.register_buffer("pos_buckets", position_buckets(c.max_len, c.n_position_buckets, c.max_len),
                             persistent=False)  # (max_len, max_len)
        self.user_fusion, self.item_features = side_layers(c, self.n_users, self.n_items + 1, c.embedding_size)
        self._windows: tuple[np.ndarray, ...] | None = None

    def items(self) -> torch.Tensor:
        """(I+1, D) item embeddings, shared by the input and the output layer."""
        return item_table(self.item_features, self.item_emb.weight)

    def encode_users(self, seqs: torch.Tensor, users: torch.Tensor | None) -> torch.Tensor:
        return self.encode(seqs, users)

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) item ids, left-padded, and (B,) user indices (None: every time 0, so the
        time bias is a constant) -> (B, L, D) hidden states, 0 at the padding."""
        L = seqs.shape[1]
        real = seqs > 0  # (B, L)
        emb = self.item_emb(seqs) if self.item_features is None else self.items()[seqs]  # (B, L, D)
        x = self.drop(emb * (self.config.embedding_size ** 0.5) + self.pos_emb.weight[-L:]) * real[..., None]
        allowed = visible_keys(seqs)  # (B, L, L)
        times = torch.zeros_like(seqs) if users is None else self.times(users, seqs)  # (B, L) int64
        time_b = time_buckets(times, self.config.n_time_buckets)  # (B, L, L), shared by the layers
        pos_b = self.pos_buckets[-L:, -L:]  # (L, L)
        for layer in self.layers:
            x = layer(x, allowed, pos_b, time_b)
        return self.norm(x) * real[..., None]
