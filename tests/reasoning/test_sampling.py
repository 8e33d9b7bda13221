"""Seed sampling: K-means shares, nearest-to-centroid picks, importance by history length,
alternation, determinism, budgets, and users that cannot be seeds."""
from __future__ import annotations

import numpy as np
import pytest

from genrecsys.errors import GenrecsysError
from genrecsys.reasoning.sampling import (SamplingConfig, adaptive_seed_sample, kmeans, resolve_count,
                                          uniform_seed_sample)


def blobs(sizes, d=4, spread=0.05, seed=0):
    """M (sum(sizes) + 1, d): blob k around axis k; returns (M, blob of each user)."""
    rng = np.random.default_rng(seed)
    rows, labels = [np.zeros((1, d))], []
    for k, n in enumerate(sizes):
        center = np.zeros(d)
        center[k] = 1.0
        rows.append(center + rng.normal(scale=spread, size=(n, d)))
        labels += [k] * n
    return np.concatenate(rows), np.array(labels)


def test_sampling_is_deterministic_under_a_seed():
    m, _ = blobs([20, 20, 20])
    lengths = np.arange(1, 61)
    cfg = SamplingConfig(budget=12, n_clusters=3, seed=7)
    a, b = adaptive_seed_sample(m, lengths, cfg), adaptive_seed_sample(m, lengths, cfg)
    assert a.users.tolist() == b.users.tolist() and a.strategy.tolist() == b.strategy.tolist()
    other = adaptive_seed_sample(m, lengths, SamplingConfig(budget=12, n_clusters=3, seed=8))
    assert other.users.tolist() != a.users.tolist()


@pytest.mark.parametrize("budget,expected", [(0.1, 6), (13, 13), (1.0, 60)])
def test_budget_as_fraction_or_count_is_met_exactly_with_distinct_users(budget, expected):
    m, _ = blobs([20, 20, 20])
    s = adaptive_seed_sample(m, np.full(60, 3), SamplingConfig(budget=budget, n_clusters=3))
    assert len(s) == expected and len(set(s.users.tolist())) == expected
    assert s.users.min() >= 0 and s.users.max() < 60


def test_a_larger_budget_extends_a_smaller_one():
    m, _ = blobs([15, 25, 20])
    lengths = np.random.default_rng(1).integers(1, 30, size=60)
    small = adaptive_seed_sample(m, lengths, SamplingConfig(budget=7, n_clusters=3))
    large = adaptive_seed_sample(m, lengths, SamplingConfig(budget=19, n_clusters=3))
    assert large.users[:7].tolist() == small.users.tolist()
    u_small, u_large = uniform_seed_sample(lengths, 7), uniform_seed_sample(lengths, 19)
    assert u_large.users[:7].tolist() == u_small.users.tolist()


def test_turns_alternate_representative_then_importance():
    m, _ = blobs([10, 10, 10, 10])
    s = adaptive_seed_sample(m, np.full(40, 5), SamplingConfig(budget=16, n_clusters=4))  # step = 4 clusters
    assert s.strategy.tolist() == (["representative"] * 4 + ["importance"] * 4) * 2


def test_a_cluster_given_one_seed_gives_the_user_nearest_its_centroid():
    m, blob = blobs([12, 12, 12])
    s = adaptive_seed_sample(m, np.full(36, 4), SamplingConfig(budget=3, n_clusters=3, normalize=False))
    assert sorted(blob[s.users].tolist()) == [0, 1, 2]  # one per cluster
    for u in s.users:
        members = np.flatnonzero(blob == blob[u])
        vecs = m[members + 1]
        nearest = members[((vecs - vecs.mean(0)) ** 2).sum(1).argmin()]
        assert u == nearest


def test_cluster_shares_are_proportional_to_cluster_size():
    m, blob = blobs([30, 10])
    s = adaptive_seed_sample(m, np.full(40, 4), SamplingConfig(budget=4, n_clusters=2, step=4))
    assert set(s.strategy.tolist()) == {"representative"}
    assert np.bincount(blob[s.users], minlength=2).tolist() == [3, 1]


def test_importance_turns_favour_users_with_long_histories():
    m, _ = blobs([100, 100])
    lengths = np.ones(200, dtype=int)
    heavy = np.arange(0, 200, 10)  # 10% of users, 50x the interactions
    lengths[heavy] = 50
    s = adaptive_seed_sample(m, lengths, SamplingConfig(budget=40, n_clusters=2, step=20, seed=3))
    imp = s.users[s.strategy == "importance"]
    assert len(imp) == 20
    assert np.isin(imp, heavy).mean() > 0.6  # ~0.85 expected (1000 of 1180 weight) vs 0.1 at random


def test_users_with_empty_histories_are_never_seeds_and_are_noted():
    m, _ = blobs([10, 10])
    lengths = np.full(20, 3)
    lengths[[0, 5, 11]] = 0
    for s in (adaptive_seed_sample(m, lengths, SamplingConfig(budget=1.0, n_clusters=2)),
              uniform_seed_sample(lengths, 1.0)):
        assert len(s) == 17 and not np.isin([0, 5, 11], s.users).any()
        assert any("3 user(s) with an empty history skipped" in n for n in s.notes)
        assert any("exceeds the 17 users" in n for n in s.notes)


def test_no_user_with_a_history_is_an_error():
    m, _ = blobs([3])
    with pytest.raises(GenrecsysError, match="all 3 users have an empty history"):
        adaptive_seed_sample(m, np.zeros(3, dtype=int))
    with pytest.raises(GenrecsysError, match="empty history"):
        uniform_seed_sample(np.zeros(3, dtype=int))


def test_uniform_ablation_is_deterministic_and_labelled():
    lengths = np.arange(50) % 7
    a, b = uniform_seed_sample(lengths, 0.2, seed=4), uniform_seed_sample(lengths, 0.2, seed=4)
    assert a.users.tolist() == b.users.tolist() and len(a) == 10
    assert set(a.strategy.tolist()) == {"uniform"} and (lengths[a.users] > 0).all()


def test_matrix_that_is_not_users_plus_padding_is_rejected():
    m, _ = blobs([5, 5])
    with pytest.raises(GenrecsysError, match=r"\(n_users \+ 1, d\)"):
        adaptive_seed_sample(m[1:], np.full(10, 2))
    bad = m.copy()
    bad[3, 0] = np.nan
    with pytest.raises(GenrecsysError, match="NaN"):
        adaptive_seed_sample(bad, np.full(10, 2))


@pytest.mark.parametrize("kwargs", [{"budget": 1.5}, {"budget": 0}, {"budget": True}, {"n_clusters": 0.0},
                                    {"step": 0}, {"budget": "10%"}])
def test_bad_sampling_config_is_rejected(kwargs):
    with pytest.raises(GenrecsysError):
        SamplingConfig(**kwargs)


def test_kmeans_recovers_well_separated_clusters_and_fills_every_cluster():
    m, blob = blobs([8, 8, 8], spread=0.01)
    _, labels = kmeans(m[1:], 3, seed=0)
    # same partition up to renaming
    assert len({(a, b) for a, b in zip(blob, labels)}) == 3
    _, labels = kmeans(np.repeat(m[1:3], 5, axis=0), 2, seed=0)  # duplicates: still two non-empty clusters
    assert np.bincount(labels, minlength=2).min() > 0


def test_resolve_count_reads_floats_as_fractions_and_ints_as_counts():
    assert resolve_count(0.05, 943) == 47 and resolve_count(0.001, 100) == 1 and resolve_count(3, 100) == 3
