"""LightGCN (He et al., 2020): user and item embeddings smoothed over the user-item
graph by K parameter-free propagation layers, averaged over layers, trained with BPR.

The graph is the symmetric-normalised bipartite adjacency D^-1/2 A D^-1/2 over
U + I + 1 nodes (users first, then items 0..I; item 0 is padding and, like any item
without training interactions, has no edges). Propagation is one sparse matmul per
layer over the whole graph, so each training batch propagates once; scoring reuses
embeddings cached by `on_eval_start`.

>>> from genrecsys.config import ExperimentConfig
>>> cfg = ExperimentConfig(model="lightgcn", model_params={"n_layers": 2, "reg_weight": 1e-4})
>>> # run_experiment(cfg, "runs/lightgcn")   # see genrecsys.experiment
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genrecsys.data.batches import pair_batches
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.models.base import Recommender, refresh_after_load
from genrecsys.models.bpr import bpr_loss
from genrecsys.reasoning.fusion import fuse_users, item_table, side_layers


@dataclass
class LightGCNConfig:
    embedding_size: int = 64
    n_layers: int = 3
    reg_weight: float = 1e-4  # L2 on the batch's ego (layer-0) embeddings, per example
    init_std: float = 0.1
    n_neg: int = 4  # sampled negatives per positive; BPR averages over them (4 beat 1 on ML-100K validation)
    user_text: str | None = None  # RELAND: .npy (U+1, d_text) rationale vectors, user u = row u+1; None = ID only
    user_fusion: str = "attention"  # RELAND fusion: attention (Eq. 5) | gated (zero-init residual gate)
    item_text: str | None = None  # "+f_item": .npy (I+1, d_text) item text vectors; None = ID only
    # Where RELAND fuses: "output" = the propagated user vector (RELAND eq. 5 on the
    # backbone's user representation); "ego" = the layer-0 user embedding, so the
    # rationale is smoothed over the graph like the ID embedding it is mixed with.
    user_fusion_at: str = "output"

    def __post_init__(self) -> None:
        if self.n_layers < 0 or self.embedding_size < 1 or self.reg_weight < 0 or self.n_neg < 1:
            raise GenrecsysError("lightgcn: n_layers >= 0, embedding_size >= 1, reg_weight >= 0 and n_neg >= 1 "
                                 "are required")
        if self.user_fusion_at not in ("output", "ego"):
            raise GenrecsysError(f"lightgcn: user_fusion_at must be 'output' or 'ego', not {self.user_fusion_at!r}")


def normalized_adjacency(split: SplitData) -> torch.Tensor:
    """(N, N) sparse D^-1/2 A D^-1/2 of the training user-item graph, N = U + I + 1.

    Node u < U is user u; node U + i is item i. Nodes without edges get zero rows
    (their inverse degree is taken as 0, not inf).
    """
    import scipy.sparse as sp

    r = split.train_matrix()  # (U, I+1), binary
    adj = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)  # (N, N)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    np.power(deg, -0.5, out=inv_sqrt, where=deg > 0)
    norm = sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)
    return sparse_to_torch(norm)


def sparse_to_torch(m) -> torch.Tensor:
    """scipy sparse -> torch sparse CSR float32 (sorted, no duplicates)."""
    import warnings

    csr = m.tocsr()
    csr.sum_duplicates()
    csr.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR @ dense is all we use
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.from_numpy(csr.indptr.astype(np.int64)),
                                       torch.from_numpy(csr.indices.astype(np.int64)),
                                       torch.from_numpy(csr.data.astype(np.float32)), csr.shape, check_invariants=True)


class _SymmetricSpMM(torch.autograd.Function):
    """A @ X for a constant symmetric sparse A.

    Torch's own backward for a CSR matmul rebuilds A^T on every call (about 7x the cost of
    the product on CPU); with A^T = A the gradient is just A @ grad.
    """

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, ctx.adj @ grad


def symmetric_spmm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N, N) symmetric sparse, (N, D) dense -> (N, D); differentiable in x only."""
    return _SymmetricSpMM.apply(adj, x)


def propagate(adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Mean of [E, A E, A^2 E, ..., A^K E]: (N, N) symmetric sparse, (N, D) -> (N, D)."""
    layers = [ego]
    x = ego
    for _ in range(n_layers):
        x = symmetric_spmm(adj, x)
        layers.append(x)
    return torch.stack(layers).mean(0)


def graph_bpr_loss(batch: dict[str, torch.Tensor], user_final: torch.Tensor, item_final: torch.Tensor,
                   user_ego: torch.Tensor, item_ego: torch.Tensor, reg_weight: float) -> torch.Tensor:
    """BPR on propagated embeddings plus L2 on the batch's ego (layer-0) embeddings.

    `batch["neg"]` is (B,) or (B, N); BPR and the negatives' L2 are averaged over the N
    negatives, so N = 1 is the plain loss. The L2 term is reg_weight / 2 * squared norms
    per example, as in the LightGCN reference code.
    """
    u, p = batch["users"], batch["pos"]
    n = batch["neg"].view(len(u), -1)  # (B, N)
    eu = user_final[u]  # (B, D)
    pos = (eu * item_final[p]).sum(-1, keepdim=True)  # (B, 1)
    neg = (eu.unsqueeze(1) * item_final[n]).sum(-1)  # (B, N)
    ego_sq = user_ego[u].pow(2).sum() + item_ego[p].pow(2).sum() + item_ego[n].pow(2).sum() / n.shape[1]
    return bpr_loss(pos, neg) + reg_weight * 0.5 * ego_sq / len(u)


class GraphRecommender(Recommender):
    """Base of the graph models (LightGCN, NGCF): subclasses define `propagated()` and
    the ego tables `user_emb`, `item_emb`; their config carries `n_neg` and `reg_weight`.
    BPR on sampled (user, positive, negatives) with L2 on the batch's ego embeddings; one
    propagation is cached for a whole round of scoring and dropped when training resumes
    or new weights are loaded."""

    _cache: tuple[torch.Tensor, torch.Tensor] | None

    def __init__(self, split: SplitData, config=None) -> None:
        super().__init__(split, config)
        self._cache = None
        self.register_load_state_dict_post_hook(refresh_after_load)

    def propagated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user (U, D) and item (I+1, D) representations."""
        raise NotImplementedError

    def batches(self, split, batch_size, rng: np.random.Generator):
        return pair_batches(split, batch_size, rng, n_neg=self.config.n_neg)

    def loss(self, batch):
        users, items = self.propagated()
        return graph_bpr_loss(batch, users, items, self.user_emb.weight, self.item_emb.weight, self.config.reg_weight)

    def on_eval_start(self) -> None:
        with torch.no_grad():
            self._cache = self.propagated()

    def on_train_start(self) -> None:
        self._cache = None

    def score(self, users, seqs):
        user_final, item_final = self._cache if self._cache is not None else self.propagated()
        return user_final[users] @ item_final.T  # (B, I+1)


class LightGCN(GraphRecommender):
    Config = LightGCNConfig
    default_lr = 1e-2
    default_batch_size = 2048

    def __init__(self, split: SplitData, config: LightGCNConfig | None = None) -> None:
        super().__init__(split, config)
        c = self.config
        self.user_emb = nn.Embedding(self.n_users, c.embedding_size)
        self.item_emb = nn.Embedding(self.n_items + 1, c.embedding_size)
        nn.init.normal_(self.user_emb.weight, std=c.init_std)
        nn.init.normal_(self.item_emb.weight, std=c.init_std)
        # RELAND fuses the propagated user vector; "+f_item" enriches the item ego embeddings.
        self.user_fusion, self.item_features = side_layers(c, self.n_users, self.n_items + 1, c.embedding_size)
        # Derived from the split, not learned: kept out of the state dict.
        self.register_buffer("adj", normalized_adjacency(split), persistent=False)

    def propagated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user (U, D) and item (I+1, D) embeddings."""
        ego_fused = self.config.user_fusion_at == "ego"
        users = fuse_users(self.user_fusion, self.user_emb.weight) if ego_fused else self.user_emb.weight
        ego = torch.cat([users, item_table(self.item_features, self.item_emb.weight)])  # (N, D)
        out = propagate(self.adj, ego, self.config.n_layers)
        final = out[:self.n_users] if ego_fused else fuse_users(self.user_fusion, out[:self.n_users])
        return final, out[self.n_users:]
