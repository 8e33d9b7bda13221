"""NeuMF (He et al., 2017): a GMF tower (element-wise product of user and item
embeddings) and an MLP tower (over the concatenated embeddings), fused by one linear
layer into a logit. Trained pointwise with binary cross-entropy: each training
interaction is a positive, `n_neg` uniformly sampled unseen items are negatives.

Scoring all items with the MLP costs B x (I+1) tower evaluations. The first MLP layer
acts on [user; item], so it splits into a user part and an item part computed once
each; only the later layers run on every (user, item) pair. `forward` is the plain
pairwise twin that training uses and the tests compare `score` against.

>>> from genrecsys.config import ExperimentConfig
>>> cfg = ExperimentConfig(model="neumf", model_params={"n_neg": 4})
>>> # run_experiment(cfg, "runs/neumf")   # see genrecsys.experiment
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.batches import pair_batches
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.base import Recommender
from genrecsys.reasoning.fusion import side_layers


@dataclass
class NeuMFConfig:
    embedding_size: int = 64  # both towers
    mlp_sizes: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    n_neg: int = 4  # sampled negatives per training interaction (4 beat RecBole's 1 on ML-100K validation)
    score_chunk: int = 8  # users per (chunk, I+1, H) block when scoring all items
    user_text: str | None = None  # RELAND: .npy (U+1, d_text) rationale vectors, user u = row u+1; None = ID only
    user_fusion: str = "attention"  # RELAND fusion: attention (Eq. 5) | gated (zero-init residual gate)
    item_text: str | None = None  # "+f_item": .npy (I+1, d_text) item text vectors; None = ID only

    def __post_init__(self) -> None:
        if not self.mlp_sizes or min(self.mlp_sizes) < 1 or self.n_neg < 1 or not 0 <= self.dropout < 1:
            raise GenrecsysError("neumf: mlp_sizes non-empty and positive, n_neg >= 1, 0 <= dropout < 1")


class NeuMF(Recommender):
    Config = NeuMFConfig
    default_lr = 5e-4
    default_batch_size = 1024

    def __init__(self, split: SplitData, config: NeuMFConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        d = c.embedding_size
        self.user_mf = nn.Embedding(self.n_users, d)
        self.item_mf = nn.Embedding(self.n_items + 1, d)
        self.user_mlp = nn.Embedding(self.n_users, d)
        self.item_mlp = nn.Embedding(self.n_items + 1, d)
        sizes = (2 * d, *c.mlp_sizes)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.drop = nn.Dropout(c.dropout)
        self.predict = nn.Linear(d + sizes[-1], 1)
        for emb in (self.user_mf, self.item_mf, self.user_mlp, self.item_mlp):
            nn.init.normal_(emb.weight, std=0.01)
        for lin in (*self.mlp, self.predict):
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)
        # The fused "user embedding" is both towers' [e_mf; e_mlp] (2D), so one attention
        # weight per user decides how much rationale both towers see; items likewise.
        self.user_fusion, self.item_features = side_layers(c, self.n_users, self.n_items + 1, 2 * d)

    def _users(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(...,) user indices -> GMF and MLP user vectors, (..., D) each."""
        if self.user_fusion is None:
            return self.user_mf(users), self.user_mlp(users)
        flat = users.reshape(-1)
        e = self.user_fusion(torch.cat([self.user_mf(flat), self.user_mlp(flat)], -1), flat)  # (N, 2D)
        # contiguous halves: the matmuls below then run the ID model's kernels on the same
        # layout, so a fusion at its identity scores bit for bit as the ID model
        return tuple(x.contiguous() for x in e.view(*users.shape, -1).chunk(2, dim=-1))

    def _item_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """GMF and MLP item tables, (I+1, D) each."""
        if self.item_features is None:
            return self.item_mf.weight, self.item_mlp.weight
        tables = self.item_features(torch.cat([self.item_mf.weight, self.item_mlp.weight], -1))
        return tuple(x.contiguous() for x in tables.chunk(2, dim=-1))

    def _tower(self, h: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Run MLP layers `first`.. on (..., H_in) -> (..., H_out); dropout then linear then ReLU."""
        for lin in self.mlp[first:]:
            h = F.relu(lin(self.drop(h)))
        return h

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits for (user, item) pairs of equal shape (...,) -> (...,)."""
        u_mf, u_mlp = self._users(users)
        if self.item_features is None:
            i_mf, i_mlp = self.item_mf(items), self.item_mlp(items)
        else:
            i_mf, i_mlp = (table[items] for table in self._item_tables())
        gmf = u_mf * i_mf  # (..., D)
        mlp = self._tower(torch.cat([u_mlp, i_mlp], -1))  # (..., H)
        return self.predict(torch.cat([gmf, mlp], -1)).squeeze(-1)

    def batches(self, split, batch_size, rng: np.random.Generator):
        n_neg = self.config.n_neg
        for b in pair_batches(split, batch_size, rng, n_neg):
            if n_neg == 1:
                b["neg"] = b["neg"][:, None]
            yield b  # users (B,), pos (B,), neg (B, n_neg)

    def loss(self, batch):
        items = torch.cat([batch["pos"][:, None], batch["neg"]], 1)  # (B, 1 + n_neg), positive first
        logits = self(batch["users"][:, None].expand_as(items), items)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)

    def score(self, users, seqs):
        """(B,) users -> (B, I+1) logits, equal to `forward` on every pair in eval mode
        (dropout is not applied here: scoring is inference)."""
        d = self.config.embedding_size
        w = self.predict.weight[0]  # (D + H,)
        first = self.mlp[0]
        u_mf, u_mlp = self._users(users)
        i_mf, i_mlp = self._item_tables()
        # First MLP layer split as W [u; i] + b = W_u u + (W_i i + b).
        # one arithmetic with and without fusion (the users' rows, then the matmul): a GEMM
        # over all users then indexed can differ in the last bit from one over the batch
        user_part = u_mlp @ first.weight[:, :d].T  # (B, H1)
        item_part = torch.addmm(first.bias, i_mlp, first.weight[:, d:].T)  # (I+1, H1)
        gmf = (u_mf * w[:d]) @ i_mf.T  # (B, I+1)
        out = torch.empty_like(gmf)
        step = self.config.score_chunk
        for start in range(0, len(users), step):
            u = users[start:start + step]
            # In-place activations on (b, I+1, H) blocks: elementwise passes over memory,
            # not the matmuls, are what full-catalogue MLP scoring spends its time on.
            h = (user_part[start:start + step][:, None, :] + item_part).relu_().flatten(0, 1)  # (b * (I+1), H1)
            for lin in self.mlp[1:]:
                h = torch.addmm(lin.bias, h, lin.weight.T).relu_()
            out[start:start + step] = (h @ w[d:]).view(len(u), -1)  # (b, I+1)
        return out + gmf + self.predict.bias
