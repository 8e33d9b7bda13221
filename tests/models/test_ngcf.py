"""NGCF: layer arithmetic against a dense twin, output shapes, dropout only in training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.models.ngcf import NGCF, BiInteraction, NGCFConfig


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles(n_users=12, items_per_group=6, length=5))


def test_layer_matches_dense_formula(split):
    torch.manual_seed(0)
    lap = NGCF(split).lap
    layer = BiInteraction(5, 3)
    x = torch.randn(lap.shape[0], 5)
    dense = lap.to_dense()
    side = dense @ x
    expected = (side + x) @ layer.w1.weight.T + layer.w1.bias + (side * x) @ layer.w2.weight.T + layer.w2.bias
    assert torch.allclose(layer(lap, x), expected, atol=1e-5)


def test_representation_concatenates_ego_and_normalised_layers(split):
    model = NGCF(split, NGCFConfig(embedding_size=8, layer_sizes=(6, 4))).eval()
    users, items = model.propagated()
    assert users.shape == (split.n_users, 8 + 6 + 4)
    assert items.shape == (split.n_items + 1, 8 + 6 + 4)
    assert torch.equal(users[:, :8], model.user_emb.weight)
    # Layer outputs are unit rows, except rows that are all zero.
    norms = items[:, 8:14].norm(dim=1)
    assert torch.all(((norms - 1).abs() < 1e-5) | (norms == 0))
    scores = model.score(torch.arange(3), torch.zeros(3, 1, dtype=torch.long))
    assert scores.shape == (3, split.n_items + 1)
    assert torch.allclose(scores, users[:3] @ items.T, atol=1e-5)


def test_message_dropout_acts_only_in_training(split):
    torch.manual_seed(0)
    model = NGCF(split, NGCFConfig(message_dropout=0.5))
    model.eval()
    assert torch.equal(model.propagated()[0], model.propagated()[0])
    model.train()
    assert not torch.equal(model.propagated()[0], model.propagated()[0])


def test_bpr_loss_has_gradients_for_every_weight(split):
    model = NGCF(split, NGCFConfig(layer_sizes=(16, 16)))
    batch = next(model.batches(split, 8, np.random.default_rng(0)))
    model.loss(batch).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_scoring_cache_is_dropped_on_load(split):
    a, b = NGCF(split).eval(), NGCF(split).eval()
    b.on_eval_start()
    b.load_state_dict(a.state_dict())
    users = torch.arange(4)
    seqs = torch.zeros(4, 1, dtype=torch.long)
    assert torch.allclose(a.score(users, seqs), b.score(users, seqs), atol=1e-6)
