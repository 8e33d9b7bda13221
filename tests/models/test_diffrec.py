"""DiffRec and L-DiffRec: the noise schedule and forward process by hand, importance sampling
of steps, the loss history, the fit on block_cycles, save/load, the item clustering."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecsys.config import EvalConfig, TrainConfig
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.experiment import build_model
from genrecsys.models.diffrec import (
    DiffRec,
    DiffRecConfig,
    GaussianDiffusion,
    linear_variance_betas,
)
from genrecsys.models.ldiffrec import LDiffRec, LDiffRecConfig, cluster_items
from genrecsys.train.loop import evaluate, fit

FAST = {"diffrec": {"lr": 1e-3, "epochs": 20}, "ldiffrec": {"lr": 1e-2, "epochs": 60}}
FULL = EvalConfig(ks=(1, 5, 10), protocol="full")


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


@pytest.fixture(scope="module")
def fitted(split):
    models = {}
    for name, params in FAST.items():
        torch.manual_seed(0)
        models[name] = build_model(name, {}, split)
        fit(models[name], split, TrainConfig(progress=False, patience=1000, batch_size=32, seed=0, **params),
            FULL, max_len=8)
    return models


def test_cumulative_variance_is_linear_from_scaled_min_to_max():
    # 1 - abar_t = 0.5 * (0.2, 0.6, 1.0) = 0.1, 0.3, 0.5 -> abar = 0.9, 0.7, 0.5
    betas = linear_variance_betas(3, 0.5, 0.2, 1.0)
    assert np.allclose(betas, [0.1, 1 - 0.7 / 0.9, 1 - 0.5 / 0.7])
    d = GaussianDiffusion(3, 0.5, 0.2, 1.0)
    assert torch.allclose(d.abar, torch.tensor([0.9, 0.7, 0.5]))
    snr = torch.tensor([9.0, 0.7 / 0.3, 1.0])
    assert torch.allclose(d.weight, torch.tensor([1.0, snr[0] - snr[1], snr[1] - snr[2]]))
    # the last reverse step returns the x_0 estimate itself
    assert d.posterior_c1[0] == pytest.approx(1.0) and d.posterior_c2[0] == pytest.approx(0.0)


def test_forward_process_has_the_scheduled_mean_and_std():
    d = GaussianDiffusion(3, 0.5, 0.2, 1.0)
    torch.manual_seed(0)
    x0 = torch.tensor([[0.0, 1.0, 1.0, 0.0]]).expand(200_000, 4)
    xt = d.q_sample(x0, torch.full((len(x0),), 2))  # abar 0.5
    assert torch.allclose(xt.mean(0), np.sqrt(0.5) * x0[0], atol=0.01)
    assert torch.allclose(xt.std(0), torch.full((4,), np.sqrt(0.5)), atol=0.01)
    noise = torch.randn(2, 4)  # with given noise the sample is exact
    x = torch.rand(2, 4)
    assert torch.allclose(d.q_sample(x, torch.tensor([0, 1]), noise),
                          torch.tensor([[0.9], [0.7]]).sqrt() * x + torch.tensor([[0.1], [0.3]]).sqrt() * noise)


def test_posterior_mean_matches_the_gaussian_posterior():
    """c1 x_0 + c2 x_t is the mean of q(x_{t-1} | x_t, x_0), checked by Bayes on one coordinate."""
    d = GaussianDiffusion(3, 0.5, 0.2, 1.0)
    t, x0, xt = 2, 0.8, 0.3
    beta, abar_prev = float(d.betas[t]), float(d.abar[t - 1])
    # prior x_{t-1} ~ N(sqrt(abar_prev) x0, 1 - abar_prev); likelihood x_t ~ N(sqrt(1 - beta) x_{t-1}, beta)
    precision = 1 / (1 - abar_prev) + (1 - beta) / beta
    mean = (np.sqrt(abar_prev) * x0 / (1 - abar_prev) + np.sqrt(1 - beta) * xt / beta) / precision
    assert float(d.posterior_c1[t]) * x0 + float(d.posterior_c2[t]) * xt == pytest.approx(mean, rel=1e-5)


def test_steps_are_uniform_until_every_history_is_full():
    d = GaussianDiffusion(3, 0.5, 0.2, 1.0, history=2)
    d.record(torch.tensor([0, 0, 1, 1, 2]), torch.tensor([1.0, 1.0, 1.0, 1.0, 100.0]))
    torch.manual_seed(0)
    t, pt = d.sample_steps(3000)
    assert torch.equal(pt, torch.ones(3000))  # step 2 has one loss of two: still uniform
    assert abs(float((t == 2).float().mean()) - 1 / 3) < 0.03
    d.record(torch.tensor([2]), torch.tensor([100.0]))
    t, pt = d.sample_steps(3000)
    p = torch.tensor([1.0, 1.0, 100.0]) / 102 * (1 - d.uniform_floor) + d.uniform_floor / 3  # RMS of the history
    assert torch.allclose(pt, p[t] * 3)
    assert abs(float((t == 2).float().mean()) - float(p[2])) < 0.03


def test_loss_history_keeps_the_newest_losses_in_order():
    d = GaussianDiffusion(2, 0.5, 0.2, 1.0, history=3)
    d.record(torch.tensor([0, 1, 0]), torch.tensor([1.0, 5.0, 2.0]))
    d.record(torch.tensor([0, 0, 0]), torch.tensor([3.0, 4.0, 6.0]))
    assert d.loss_history[0].tolist() == [3.0, 4.0, 6.0] and d.loss_count.tolist() == [3, 1]
    assert d.loss_history[1, 0] == 5.0
    assert {"loss_history", "loss_count"} <= set(d.state_dict())  # a resumed run samples as before
    assert "abar" not in d.state_dict()  # the schedule follows from the config


def test_reweighted_loss_fills_the_history_and_unweighted_does_not(split):
    torch.manual_seed(0)
    model = DiffRec(split, DiffRecConfig(steps=3, hidden_sizes=(8,)))
    model.train()
    model.loss({"users": torch.arange(8)})
    assert int(model.diffusion.loss_count.sum()) == 8
    plain = DiffRec(split, DiffRecConfig(steps=3, hidden_sizes=(8,), reweight=False))
    assert torch.isfinite(plain.loss({"users": torch.arange(8)}))
    assert int(plain.diffusion.loss_count.sum()) == 0


@pytest.mark.parametrize("name", list(FAST))
def test_fit_ranks_the_held_out_item_high(name, split, fitted):
    res = evaluate(fitted[name], split, "test", FULL, max_len=8)
    assert res.metrics["hit@5"] >= 0.8, res.metrics


def test_noised_scoring_is_still_deterministic(split):
    torch.manual_seed(0)
    model = DiffRec(split, DiffRecConfig(steps=3, sampling_steps=2, hidden_sizes=(8,))).eval()
    users, seqs = torch.arange(3), torch.zeros(3, 2, dtype=torch.long)
    assert torch.equal(model.score(users, seqs), model.score(users, seqs))


def test_items_cluster_into_the_synthetic_groups_reproducibly(split):
    clusters = cluster_items(split, 2, 8)
    group = np.array([-1] + [(int(i[1:]) - 1) // 10 for i in split.item_ids[1:]])  # "i7" -> group 0
    assert clusters[0] == -1
    same = (clusters[1:] == group[1:]).all() or (clusters[1:] == 1 - group[1:]).all()
    assert same, (clusters, group)
    assert np.array_equal(clusters, cluster_items(split, 2, 8))


def test_a_saved_cluster_assignment_wins_on_load(split, tmp_path):
    """A model saved where k-means grouped the items differently loads with those groups."""
    torch.manual_seed(0)
    saved = LDiffRec(split, LDiffRecConfig(latent_size=8, hidden_sizes=(8,)))
    other = saved.item_cluster.numpy().copy()
    other[1:4] = 1 - other[1:4]  # move three items to the other cluster
    saved._build(other)
    state = saved.state_dict()
    clone = LDiffRec(split, LDiffRecConfig(latent_size=8, hidden_sizes=(8,)))
    clone.load_state_dict(state)
    assert torch.equal(clone.item_cluster, torch.as_tensor(other))
    users, seqs = torch.arange(4), torch.zeros(4, 1, dtype=torch.long)
    saved.eval(), clone.eval()
    assert torch.allclose(saved.score(users, seqs), clone.score(users, seqs), atol=1e-6)
