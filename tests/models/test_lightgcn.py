"""LightGCN: the normalised graph, sparse propagation against a dense twin, the scoring cache."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genrecsys.data.schema import Dataset
from genrecsys.data.splits import leave_one_out
from genrecsys.errors import GenrecsysError
from genrecsys.models.lightgcn import (LightGCN, LightGCNConfig, graph_bpr_loss, normalized_adjacency, propagate,
                                      symmetric_spmm)
from genrecsys.reasoning.fusion import UserFusion


@pytest.fixture(scope="module")
def split():
    """Training edges u0-{i1,i2}, u1-{i2}, u2-{i1,i3}; i4 and i5 occur only as test targets."""
    rows = [("u0", "i1"), ("u0", "i2"), ("u0", "i3"), ("u0", "i4"),
            ("u1", "i2"), ("u1", "i3"), ("u1", "i1"),
            ("u2", "i1"), ("u2", "i3"), ("u2", "i2"), ("u2", "i5")]
    inter = pd.DataFrame([(u, i, t, 5.0) for t, (u, i) in enumerate(rows)], columns=["user", "item", "timestamp", "rating"])
    return leave_one_out(Dataset("tiny", inter))


def _dense_adjacency(split) -> np.ndarray:
    r = split.train_matrix().toarray()  # (U, I+1)
    n_users = r.shape[0]
    a = np.zeros((n_users + r.shape[1],) * 2, dtype=np.float64)
    a[:n_users, n_users:] = r
    a[n_users:, :n_users] = r.T
    return a


def test_adjacency_is_symmetric_with_inverse_sqrt_degree_weights(split):
    adj = normalized_adjacency(split).to_dense().double().numpy()
    a = _dense_adjacency(split)
    deg = a.sum(1)
    assert np.allclose(adj, adj.T)
    rows, cols = np.nonzero(a)
    assert np.allclose(adj[rows, cols], 1 / np.sqrt(deg[rows] * deg[cols]))
    assert np.count_nonzero(adj) == np.count_nonzero(a)
    # u0 (degree 2) - i1 (degree 2: u0, u2) and u1 (degree 1) - i2 (degree 2: u0, u1)
    assert adj[0, 3 + 1] == pytest.approx(0.5)
    assert adj[1, 3 + 2] == pytest.approx(1 / np.sqrt(2))


def test_padding_and_items_without_training_edges_are_isolated(split):
    adj = normalized_adjacency(split).to_dense()
    n_users = split.n_users
    for item in (0, 4, 5):  # padding; i4, i5 appear only as test targets
        assert not adj[n_users + item].any() and not adj[:, n_users + item].any()
    assert torch.isfinite(adj).all()


def test_propagation_matches_dense_reference(split):
    adj = normalized_adjacency(split)
    dense = torch.from_numpy(np.asarray(adj.to_dense(), dtype=np.float64))
    ego = torch.randn(adj.shape[0], 5, dtype=torch.float64)
    expected = (ego + dense @ ego + dense @ dense @ ego + dense @ dense @ dense @ ego) / 4
    got = propagate(adj, ego.float(), n_layers=3)
    assert torch.allclose(got.double(), expected, atol=1e-5)


def test_sparse_matmul_gradient_matches_dense(split):
    adj = normalized_adjacency(split)
    x = torch.randn(adj.shape[0], 4, requires_grad=True)
    weights = torch.randn(adj.shape[0], 4)
    (symmetric_spmm(adj, symmetric_spmm(adj, x)) * weights).sum().backward()
    sparse_grad = x.grad.clone()
    x.grad = None
    dense = adj.to_dense()
    (dense @ (dense @ x) * weights).sum().backward()
    assert torch.allclose(sparse_grad, x.grad, atol=1e-5)


def test_scores_are_layer_mean_dot_products(split):
    model = LightGCN(split, LightGCNConfig(embedding_size=8, n_layers=2)).eval()
    users, items = model.propagated()
    assert users.shape == (split.n_users, 8) and items.shape == (split.n_items + 1, 8)
    with torch.no_grad():
        scores = model.score(torch.arange(split.n_users), torch.zeros(split.n_users, 1, dtype=torch.long))
    assert torch.allclose(scores, users @ items.T, atol=1e-6)


def test_scoring_cache_is_dropped_on_train_start_and_on_load(split):
    model = LightGCN(split, LightGCNConfig(embedding_size=8))
    users = torch.arange(split.n_users)
    seqs = torch.zeros(split.n_users, 1, dtype=torch.long)
    model.on_eval_start()
    before = model.score(users, seqs).detach()
    with torch.no_grad():
        model.user_emb.weight.mul_(2.0)
        model.item_emb.weight.mul_(2.0)  # propagation is linear: every score x4
    assert torch.equal(model.score(users, seqs), before)  # still cached, by design
    model.on_train_start()
    assert torch.allclose(model.score(users, seqs).detach(), 4 * before, atol=1e-6)

    other = LightGCN(split, LightGCNConfig(embedding_size=8))
    other.on_eval_start()
    other.load_state_dict(model.state_dict())
    assert torch.allclose(other.score(users, seqs).detach(), 4 * before, atol=1e-6)


def test_adjacency_is_not_part_of_the_state_dict(split):
    assert set(LightGCN(split).state_dict()) == {"user_emb.weight", "item_emb.weight"}


def test_bpr_loss_averages_over_negatives_and_regularises_ego_embeddings():
    torch.manual_seed(0)
    final_u, final_i, ego_u, ego_i = torch.randn(3, 4), torch.randn(6, 4), torch.randn(3, 4), torch.randn(6, 4)
    batch = {"users": torch.tensor([0, 2]), "pos": torch.tensor([1, 3]), "neg": torch.tensor([[2, 5], [4, 1]])}
    got = graph_bpr_loss(batch, final_u, final_i, ego_u, ego_i, reg_weight=0.1)
    bpr, reg = 0.0, 0.0
    for row, (u, p) in enumerate(zip([0, 2], [1, 3])):
        for n in batch["neg"][row].tolist():
            bpr -= torch.nn.functional.logsigmoid(final_u[u] @ final_i[p] - final_u[u] @ final_i[n]) / 4
        reg += ego_u[u].square().sum() + ego_i[p].square().sum() + ego_i[batch["neg"][row]].square().sum() / 2
    assert torch.allclose(got, bpr + 0.1 * 0.5 * reg / 2, atol=1e-6)
    single = {**batch, "neg": batch["neg"][:, 0]}  # (B,) negatives: the plain one-negative loss
    assert torch.allclose(graph_bpr_loss(single, final_u, final_i, ego_u, ego_i, 0.0),
                          graph_bpr_loss({**batch, "neg": batch["neg"][:, :1]}, final_u, final_i, ego_u, ego_i, 0.0))


def _rationales(split) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(split.n_users + 1, 5)).astype(np.float32)


def test_ego_fusion_mixes_the_rationale_in_before_propagation(split):
    torch.manual_seed(0)
    model = LightGCN(split, LightGCNConfig(embedding_size=4, n_layers=2, user_fusion_at="ego"))
    model.user_fusion = UserFusion(_rationales(split), 4)
    users, items = model.propagated()
    with torch.no_grad():
        ego = torch.cat([model.user_fusion(model.user_emb.weight), model.item_emb.weight])
        out = propagate(model.adj, ego, 2)
    assert torch.allclose(users, out[:split.n_users]) and torch.allclose(items, out[split.n_users:])
    # the rationale reaches the items too: a neighbour's text moves an item's vector
    plain = propagate(model.adj, torch.cat([model.user_emb.weight, model.item_emb.weight]), 2)
    assert not torch.allclose(items, plain[split.n_users:])


def test_output_fusion_leaves_the_item_vectors_alone(split):
    torch.manual_seed(0)
    model = LightGCN(split, LightGCNConfig(embedding_size=4, n_layers=2))
    model.user_fusion = UserFusion(_rationales(split), 4)
    users, items = model.propagated()
    with torch.no_grad():
        plain = propagate(model.adj, torch.cat([model.user_emb.weight, model.item_emb.weight]), 2)
    assert torch.allclose(items, plain[split.n_users:])
    assert torch.allclose(users, model.user_fusion(plain[:split.n_users]))


def test_an_unknown_fusion_point_is_a_clear_error():
    with pytest.raises(GenrecsysError, match="user_fusion_at must be 'output' or 'ego'"):
        LightGCNConfig(user_fusion_at="layer-1")
