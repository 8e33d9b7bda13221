"""The contract every recommender meets, so that one training loop serves them all.

A model is a `torch.nn.Module` built from a `SplitData` and its own config dataclass:

- `Config`: dataclass of hyper-parameters with defaults (YAML `model_params` map onto it)
- `batches(split, batch_size, rng)`: yields dicts of tensors for one training epoch
- `loss(batch)`: scalar loss for one batch
- `score(users, seqs)`: (B, n_items + 1) scores; `users` are user indices (B,) and
  `seqs` the left-padded histories (B, L) — CF models read users, sequential ones seqs
- `trainable`: False for models fitted in closed form (`fit_closed_form` then runs once)
- `default_lr`, `default_batch_size`, `default_weight_decay`: what the trainer uses
  unless the train config overrides them
- `score_candidates(users, seqs, candidates)`: (B, C) scores of given candidates (B, C),
  0 = padding; by default gathered from `score`, models with a cheaper path override it
- `protocol`: how the model is evaluated unless the eval config says otherwise —
  "full" (rank the catalog) or "impressions" (AUC/MRR/nDCG per impression)
- `make_optimizer(lr, weight_decay)`: Adam with L2 by default
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from genrecsys.data.splits import SplitData


@dataclass
class NoConfig:
    pass


class Recommender(nn.Module):
    Config: type = NoConfig
    trainable: bool = True
    default_lr: float = 1e-3
    default_batch_size: int = 2048
    default_weight_decay: float = 0.0
    protocol: str = "full"

    def __init__(self, split: SplitData, config: Any | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.Config()
        self.n_users = split.n_users
        self.n_items = split.n_items

    def batches(self, split: SplitData, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_candidates(self, users: torch.Tensor, seqs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """(B,), (B, L), (B, C) -> (B, C): the `score` columns of each row's candidates."""
        return torch.gather(self.score(users, seqs), 1, candidates)

    def make_optimizer(self, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """Adam with weight decay as an L2 penalty on the gradient (torch.optim.Adam's)."""
        return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)

    def fit_closed_form(self, split: SplitData) -> None:
        """Models with `trainable = False` compute their parameters here."""

    def reads_users(self) -> bool:
        """Whether ``score`` depends on the user index beyond the sequence. False lets a
        sequence be scored for an anonymous visitor (the serving API's "items" request)."""
        return True

    def on_eval_start(self) -> None:
        """Called before a round of scoring (e.g. graph models cache propagated embeddings)."""

    def on_train_start(self) -> None:
        """Called before each training epoch (drop any scoring cache)."""


def refresh_after_load(module: Recommender, _keys) -> None:
    """A ``load_state_dict`` post-hook for models that cache derived tensors: new weights
    make the cache stale. A module-level function, not a lambda, so the model pickles (as
    data-parallel training and Ray do)."""
    module.on_train_start()
