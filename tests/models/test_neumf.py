"""NeuMF: GMF + MLP fusion, the all-items scorer against the pairwise twin, the BCE loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.models.neumf import NeuMF, NeuMFConfig


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles(n_users=12, items_per_group=6, length=5))


def test_logit_fuses_gmf_and_mlp_towers(split):
    torch.manual_seed(0)
    model = NeuMF(split, NeuMFConfig(embedding_size=4, mlp_sizes=(6, 3))).eval()
    u, i = torch.tensor([0, 5]), torch.tensor([3, 7])
    gmf = model.user_mf(u) * model.item_mf(i)  # (2, 4)
    h = torch.cat([model.user_mlp(u), model.item_mlp(i)], -1)  # (2, 8)
    h = F.relu(model.mlp[1](F.relu(model.mlp[0](h))))  # (2, 3)
    w, b = model.predict.weight[0], model.predict.bias
    expected = gmf @ w[:4] + h @ w[4:] + b
    assert torch.allclose(model(u, i), expected, atol=1e-6)


def test_all_item_scores_match_pairwise_forward(split):
    torch.manual_seed(0)
    model = NeuMF(split, NeuMFConfig(embedding_size=8, score_chunk=3)).eval()  # chunks of 3 users
    for emb in (model.user_mf, model.item_mf, model.user_mlp, model.item_mlp):
        torch.nn.init.normal_(emb.weight)  # larger than the init, so the MLP's ReLUs matter
    users = torch.arange(7)
    with torch.no_grad():
        scores = model.score(users, torch.zeros(7, 1, dtype=torch.long))
        n_cols = split.n_items + 1
        pairwise = model(users[:, None].expand(7, n_cols), torch.arange(n_cols).expand(7, n_cols))
    assert scores.shape == (7, n_cols)
    assert torch.allclose(scores, pairwise, atol=1e-5)


def test_loss_is_bce_with_one_positive_and_n_neg_negatives(split):
    torch.manual_seed(0)
    model = NeuMF(split, NeuMFConfig(embedding_size=4, n_neg=3, dropout=0.0))
    batch = next(model.batches(split, 5, np.random.default_rng(0)))
    assert batch["neg"].shape == (5, 3)
    pos = model(batch["users"], batch["pos"])
    neg = model(batch["users"][:, None].expand(5, 3), batch["neg"])
    expected = (F.softplus(-pos).sum() + F.softplus(neg).sum()) / 20
    assert torch.allclose(model.loss(batch), expected, atol=1e-6)


def test_single_negative_batches_keep_a_negative_axis(split):
    model = NeuMF(split, NeuMFConfig(n_neg=1))
    batch = next(model.batches(split, 4, np.random.default_rng(0)))
    assert batch["neg"].shape == (4, 1) and batch["pos"].shape == (4,)
