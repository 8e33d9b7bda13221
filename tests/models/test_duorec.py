"""DuoRec: prefix samples, semantic positives, InfoNCE, and the two-view loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.errors import GenrecsysError
from genrecsys.experiment import build_model
from genrecsys.models.duorec import info_nce, prefix_rows, prefix_samples, same_target_partners


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


def test_every_training_transition_is_one_prefix_sample(split):
    owners, ends, targets = prefix_samples(split.train)
    assert len(targets) == sum(max(len(split.train.of(u)) - 1, 0) for u in range(split.n_users))
    for n in (0, 5, len(targets) - 1):
        seq = split.train.of(owners[n])
        k = ends[n] - split.train.indptr[owners[n]]
        assert k >= 1 and targets[n] == seq[k]


def test_prefix_rows_are_the_left_padded_recent_history(split):
    owners, ends, _ = prefix_samples(split.train)
    rows = prefix_rows(split.train, owners, ends, max_len=4)
    for n in range(len(owners)):
        seq = split.train.of(owners[n])
        prefix = seq[:ends[n] - split.train.indptr[owners[n]]][-4:]
        expected = np.concatenate([np.zeros(4 - len(prefix), np.int64), prefix])
        assert np.array_equal(rows[n], expected)


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


def test_without_the_regularizer_and_dropout_the_loss_is_plain_cross_entropy(split):
    torch.manual_seed(0)
    model = build_model("duorec", {"lmd": 0.0}, split)
    model.eval()
    batch = next(iter(model.batches(split, 16, np.random.default_rng(0))))
    logits = model.encode(batch["seqs"])[:, -1] @ model.item_emb.weight.T
    assert torch.allclose(model.loss(batch), F.cross_entropy(logits, batch["targets"]))
    model.config.lmd = 0.1  # the contrastive term is added on top, and is positive
    assert model.loss(batch) > F.cross_entropy(logits, batch["targets"])


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
