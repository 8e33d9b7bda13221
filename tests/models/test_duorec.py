"""DuoRec: window slots, semantic positives, InfoNCE, and the loss on SASRec's windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.errors import GenrecsysError
from genrecsys.experiment import build_model
from genrecsys.models.duorec import info_nce, same_target_partners, window_slots


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


def test_every_training_transition_is_one_window_slot(split):
    model = build_model("duorec", {"max_len": 4}, split)
    batches = list(model.batches(split, 16, np.random.default_rng(0)))
    x, y, _ = model._windows
    w, t, target = window_slots(y)
    assert len(target) == sum(max(len(split.train.of(u)) - 1, 0) for u in range(split.n_users))
    assert np.array_equal(y[w, t], target) and (target > 0).all()
    assert sum(len(b["seqs"]) for b in batches) == len(x)


def test_contrastive_pairs_are_sampled_positions_and_same_target_partners(split):
    model = build_model("duorec", {"max_len": 4, "cl_positions": 2}, split)
    for b in model.batches(split, 8, np.random.default_rng(1)):
        rows, at = b["cl_rows"].numpy(), b["cl_at"].numpy()
        assert len(rows) == 2 * len(b["seqs"]) and np.array_equal(rows, np.repeat(np.arange(len(b["seqs"])), 2))
        own_target = b["targets"].numpy()[rows, at]
        assert (own_target > 0).all()  # a real position of the window, never padding
        pos = b["positives"].numpy()
        x, y, _ = model._windows
        # each positive window is a training window whose target at pos_at is the same item
        found = [np.flatnonzero((x == pos[i]).all(1)) for i in range(len(pos))]
        assert all(any(y[w, b["pos_at"][i]] == own_target[i] for w in ws) for i, ws in enumerate(found))


def test_partners_share_the_target_and_differ_whenever_possible():
    targets = np.array([3, 1, 3, 2, 3, 1, 7])
    for seed in range(5):
        partner = same_target_partners(targets, np.random.default_rng(seed))
        assert np.array_equal(targets[partner], targets)
        alone = np.array([np.sum(targets == t) == 1 for t in targets])
        assert np.array_equal(partner == np.arange(len(targets)), alone)


def test_info_nce_rewards_aligned_views():
    torch.manual_seed(0)
    a = torch.randn(8, 16)
    aligned = info_nce(a, a + 0.01 * torch.randn(8, 16), tau=1.0)
    shuffled = info_nce(a, a[torch.randperm(8)], tau=1.0)
    assert aligned < 0.01 < shuffled


def test_without_the_regularizer_the_loss_is_sasrecs_cross_entropy_at_every_position(split):
    torch.manual_seed(0)
    model = build_model("duorec", {"lmd": 0.0}, split)
    model.eval()
    batch = next(iter(model.batches(split, 16, np.random.default_rng(0))))
    h, mask = model.encode(batch["seqs"]), batch["targets"] > 0
    ce = F.cross_entropy(h[mask] @ model.item_emb.weight.T, batch["targets"][mask])
    assert torch.allclose(model.loss(batch), ce)
    model.config.lmd = 0.1  # the contrastive term is added on top, and is positive
    assert model.loss(batch) > ce


def test_the_unsupervised_view_is_a_second_dropout_pass(split):
    model = build_model("duorec", {}, split)
    seqs = next(iter(model.batches(split, 8, np.random.default_rng(0))))["seqs"]
    model.train()
    assert not torch.allclose(model.encode(seqs), model.encode(seqs))
    model.eval()
    assert torch.allclose(model.encode(seqs), model.encode(seqs))


def test_bad_temperature_or_weight_is_a_clear_error(split):
    with pytest.raises(GenrecsysError, match="tau > 0"):
        build_model("duorec", {"tau": 0.0}, split)
    with pytest.raises(GenrecsysError, match="lmd >= 0"):
        build_model("duorec", {"lmd": -1.0}, split)
