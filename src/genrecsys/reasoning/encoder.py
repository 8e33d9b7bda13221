"""The behaviour encoder (RELAND Eq. 1): one vector per user, the matrix M.

M is (n_users + 1, d) float32 with row 0 = padding (zeros): split user u is row u + 1,
the convention of the project's user-id embeddings. Sampling, the pool and retrieval
all read M in that layout.

The authors' lightweight encoder is LightGCN; `genrecsys.experiment.train_behaviour_encoder`
fits one with the project's training loop (early stopping on validation NDCG@10) and
returns its final propagated user embeddings. Any model with user vectors serves as well
(:func:`user_matrix`), as does a finished run directory
(`genrecsys.experiment.user_matrix_from_run`) or a plain array (:func:`pad_user_vectors`).
Training and loading runs are the experiment layer's: `reasoning` imports neither `train`
nor the models (the models import its fusion layers).

>>> import numpy as np
>>> pad_user_vectors(np.ones((2, 3))).tolist()
[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from genrecsys.errors import GenrecsysError


@dataclass
class EncoderConfig:
    """LightGCN behaviour encoder; defaults follow the authors (embedding 64, patience 10)."""

    embedding_size: int = 64
    n_layers: int = 3
    epochs: int = 300
    patience: int = 10
    lr: float | None = None  # None: LightGCN's default
    batch_size: int | None = 1024  # the authors' batch size
    seed: int = 2020
    max_seconds: float | None = None
    threads: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.embedding_size < 1 or self.n_layers < 0 or self.epochs < 1 or self.patience < 1:
            raise GenrecsysError("encoder: embedding_size >= 1, n_layers >= 0, epochs >= 1, patience >= 1 are required")


def pad_user_vectors(vectors: Any) -> np.ndarray:
    """(n_users, d) user vectors -> M, (n_users + 1, d) float32 with a zero padding row 0."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] < 1:
        raise GenrecsysError(f"user vectors must be a 2-d (n_users, d) array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise GenrecsysError("user vectors hold NaN or inf values")
    return np.concatenate([np.zeros((1, v.shape[1]), dtype=np.float32), v])


def user_matrix(model) -> np.ndarray:
    """M from a trained model: a graph model's final propagated user embeddings
    (``propagated()``, e.g. LightGCN, NGCF), else its ``user_emb`` table (e.g. BPR)."""
    import torch

    model.eval()
    with torch.no_grad():
        if hasattr(model, "on_eval_start"):
            model.on_eval_start()
        if callable(getattr(model, "propagated", None)):
            users = model.propagated()[0]
        elif isinstance(getattr(model, "user_emb", None), torch.nn.Embedding):
            users = model.user_emb.weight
        else:
            raise GenrecsysError(f"{type(model).__name__} has no user vectors (needs propagated() or a user_emb "
                                 "table); encode users yourself and pass them to pad_user_vectors")
        return pad_user_vectors(users.detach().float().cpu().numpy())
