"""NGCF (Wang et al., 2019): graph convolution over the user-item graph with learned
weights. Each layer k computes, with L the normalised adjacency and E the layer input,

    E' = LeakyReLU((L E + E) W1 + b1 + ((L E) * E) W2 + b2)

(the self-connection plus the element-wise "bi-interaction" messages), then message
dropout and row-wise L2 normalisation. The final representation concatenates the ego
embeddings with every layer's output; scores are dot products. Trained with BPR plus
L2 on the batch's ego embeddings. The graph and its sparse product are LightGCN's.

>>> from genrecsys.config import ExperimentConfig
>>> cfg = ExperimentConfig(model="ngcf", model_params={"layer_sizes": [64, 64], "message_dropout": 0.1})
>>> # run_experiment(cfg, "runs/ngcf")   # see genrecsys.experiment
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.lightgcn import GraphRecommender, normalized_adjacency, symmetric_spmm
from genrecsys.reasoning.fusion import fuse_users, item_table, side_layers


@dataclass
class NGCFConfig:
    embedding_size: int = 64
    layer_sizes: tuple[int, ...] = (64, 64, 64)
    message_dropout: float = 0.0  # ML-100K tuning preferred none (0.1 is the paper's value)
    reg_weight: float = 1e-4  # L2 on the batch's ego embeddings, per example
    leaky_slope: float = 0.2
    n_neg: int = 4  # sampled negatives per positive; BPR averages over them (4 beat 1 on ML-100K validation)
    user_text: str | None = None  # RELAND: .npy (U+1, d_text) rationale vectors, user u = row u+1; None = ID only
    user_fusion: str = "attention"  # RELAND fusion: attention (Eq. 5) | gated (zero-init residual gate)
    item_text: str | None = None  # "+f_item": .npy (I+1, d_text) item text vectors; None = ID only

    def __post_init__(self) -> None:
        if self.embedding_size < 1 or min(self.layer_sizes, default=1) < 1 or self.reg_weight < 0 \
                or not 0 <= self.message_dropout < 1 or self.n_neg < 1:
            raise GenrecsysError("ngcf: positive sizes, reg_weight >= 0, n_neg >= 1 and 0 <= message_dropout < 1 "
                                 "are required")


class BiInteraction(nn.Module):
    """One NGCF layer: (N, N) sparse L, (N, D_in) E -> (N, D_out)."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_in, d_out)
        self.w2 = nn.Linear(d_in, d_out)
        nn.init.xavier_uniform_(self.w1.weight)
        nn.init.xavier_uniform_(self.w2.weight)
        nn.init.zeros_(self.w1.bias)
        nn.init.zeros_(self.w2.bias)

    def forward(self, lap: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        side = symmetric_spmm(lap, x)  # (N, D_in)
        return self.w1(side + x) + self.w2(side * x)


class NGCF(GraphRecommender):
    Config = NGCFConfig
    default_lr = 2e-3
    default_batch_size = 2048

    def __init__(self, split: SplitData, config: NGCFConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        self.user_emb = nn.Embedding(self.n_users, c.embedding_size)
        self.item_emb = nn.Embedding(self.n_items + 1, c.embedding_size)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        sizes = (c.embedding_size, *c.layer_sizes)
        self.layers = nn.ModuleList(BiInteraction(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.drop = nn.Dropout(c.message_dropout)
        # RELAND fuses the final (concatenated) user vector; "+f_item" enriches the item ego embeddings.
        self.user_fusion, self.item_features = side_layers(c, self.n_users, self.n_items + 1, sum(sizes), c.embedding_size)
        self.register_buffer("lap", normalized_adjacency(split), persistent=False)  # derived, not learned

    def propagated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user (U, D_all) and item (I+1, D_all) representations, D_all = D + sum(layer_sizes)."""
        x = torch.cat([self.user_emb.weight, item_table(self.item_features, self.item_emb.weight)])  # (N, D)
        outs = [x]
        for layer in self.layers:
            x = self.drop(F.leaky_relu(layer(self.lap, x), self.config.leaky_slope))
            outs.append(F.normalize(x, dim=1))
        final = torch.cat(outs, dim=1)  # (N, D_all)
        return fuse_users(self.user_fusion, final[:self.n_users]), final[self.n_users:]
