"""BERT4Rec (Sun et al., 2019): a bidirectional Transformer trained by cloze.

Item vocabulary is `n_items + 2`: 0 is padding, 1..n_items the items and
`n_items + 1` the [MASK] token. Training inputs are each user's training sequence cut
into windows of `max_len` items from the end backwards (stride `max_len`, so every
interaction appears once per pass; the newest window has the longest context). Each
pass puts [MASK] on every real position with probability `mask_prob` (never on
padding; a window that drew no mask gets its last item masked) and the loss is
full-softmax cross-entropy over the items at the masked positions. An epoch makes
`passes` such passes with fresh masks, because one cloze pass trains on only
`mask_prob` of the interactions.

Scoring appends [MASK] after the last item (dropping the oldest to keep the length)
and reads the item scores at that position: (B, n_items + 1), [MASK] column dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.splits import Part, SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.base import Recommender
from genrecsys.models.blocks import IMPLS, Dropout, Encoder, attention_bias


@dataclass
class BERT4RecConfig:
    embedding_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    max_len: int = 50
    mask_prob: float = 0.2
    passes: int = 1  # cloze passes over the windows per epoch, each with fresh masks
    encoder_impl: str = "cpu"  # cpu: models.blocks layers (faster on CPU) | torch: nn.TransformerEncoderLayer (GPU)

    def __post_init__(self) -> None:
        if min(self.embedding_size, self.n_layers, self.n_heads, self.passes) < 1 or self.max_len < 2:
            raise GenrecsysError("bert4rec: embedding_size, n_layers, n_heads, passes >= 1 and max_len >= 2 required")
        if self.embedding_size % self.n_heads:
            raise GenrecsysError("bert4rec: embedding_size must be divisible by n_heads")
        if not 0.0 < self.mask_prob < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise GenrecsysError("bert4rec: mask_prob must be in (0, 1) and dropout in [0, 1)")
        if self.encoder_impl not in IMPLS:
            raise GenrecsysError(f"bert4rec: encoder_impl must be one of {', '.join(IMPLS)}, got {self.encoder_impl!r}")


def item_windows(part: Part, max_len: int) -> np.ndarray:
    """Each user's sequence cut into left-padded windows of `max_len` items, taken from
    the end backwards with stride `max_len`: (W, max_len)."""
    rows = []
    for u in range(len(part.indptr) - 1):
        seq = part.of(u)
        for end in range(len(seq), 0, -max_len):
            chunk = seq[max(0, end - max_len):end]
            row = np.zeros(max_len, dtype=np.int64)
            row[max_len - len(chunk):] = chunk
            rows.append(row)
    return np.stack(rows) if rows else np.zeros((0, max_len), dtype=np.int64)


def cloze_mask(seqs: np.ndarray, mask_prob: float, rng: np.random.Generator) -> np.ndarray:
    """(W, L) left-padded windows -> (W, L) bool: which positions get [MASK].

    Each real position independently with probability `mask_prob`, never padding; a
    window with real items but no draw gets its last position (always real) masked.
    """
    real = seqs > 0
    masked = (rng.random(seqs.shape) < mask_prob) & real
    empty = ~masked.any(1) & real[:, -1]
    masked[empty, -1] = True
    return masked


class BERT4Rec(Recommender):
    Config = BERT4RecConfig
    default_lr = 1e-3  # tuned on ML-100K validation NDCG@10 (seeds 2020, 2021), as are the Config defaults
    default_batch_size = 128

    def __init__(self, split: SplitData, config: BERT4RecConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        self.mask_id = self.n_items + 1
        self.item_emb = nn.Embedding(self.n_items + 2, c.embedding_size, padding_idx=0)
        self.pos_emb = nn.Embedding(c.max_len, c.embedding_size)
        self.in_norm = nn.LayerNorm(c.embedding_size)
        self.drop = Dropout(c.dropout) if c.encoder_impl == "cpu" else nn.Dropout(c.dropout)  # torch: as before
        self.encoder = Encoder(c.embedding_size, c.n_heads, c.n_layers, c.dropout, norm_first=False,
                               impl=c.encoder_impl)
        # output head of BERT's masked-LM: dense -> gelu -> norm, then tied item embeddings + bias
        self.head = nn.Sequential(nn.Linear(c.embedding_size, c.embedding_size), nn.GELU(), nn.LayerNorm(c.embedding_size))
        self.out_bias = nn.Parameter(torch.zeros(self.n_items + 2))
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self._windows: np.ndarray | None = None

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """(B, L) ids (items, [MASK], 0 = padding on the left) -> (B, L, D) hidden states."""
        L = seqs.shape[1]
        x = self.drop(self.in_norm(self.item_emb(seqs) + self.pos_emb.weight[-L:]))  # (B, L, D)
        pad = seqs == 0
        h = self.encoder(x, attention_bias(pad, causal=False))
        return self.head(h)  # (B, L, D)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, n_items + 1) scores of padding and items; the [MASK] column dropped."""
        return h @ self.item_emb.weight[:-1].T + self.out_bias[:-1]

    def batches(self, split: SplitData, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        if self._windows is None:
            self._windows = item_windows(split.train, self.config.max_len)
        windows = self._windows
        for _ in range(self.config.passes):
            order = rng.permutation(len(windows))
            for start in range(0, len(order), batch_size):
                seqs = windows[order[start:start + batch_size]]
                masked = cloze_mask(seqs, self.config.mask_prob, rng)
                yield {"seqs": torch.from_numpy(np.where(masked, self.mask_id, seqs)),
                       "targets": torch.from_numpy(np.where(masked, seqs, 0))}

    def loss(self, batch):
        targets = batch["targets"]  # (B, L), 0 where not masked
        where = targets > 0
        h = self.encode(batch["seqs"])[where]  # (N, D)
        return F.cross_entropy(self.logits(h), targets[where])

    def reads_users(self) -> bool:
        return False

    def score(self, users, seqs):
        seqs = seqs[:, -self.config.max_len:]
        mask = torch.full_like(seqs[:, :1], self.mask_id)
        h = self.encode(torch.cat([seqs[:, 1:], mask], dim=1))[:, -1]  # (B, D)
        return self.logits(h)  # (B, n_items + 1)
