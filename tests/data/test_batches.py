from __future__ import annotations

import numpy as np

from genrecsys.data.batches import NegativeSampler, pair_batches, sequence_windows
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles


def test_negatives_are_never_items_the_user_interacted_with():
    split = leave_one_out(block_cycles(n_users=10, items_per_group=6, length=5))
    sampler = NegativeSampler(split.train, split.n_items)
    users = np.repeat(np.arange(split.n_users), 200)
    neg = sampler.sample(users, np.random.default_rng(0), n_neg=2)
    for u, row in zip(users, neg):
        assert not set(row) & set(split.train.of(u))
    assert neg.min() >= 1 and neg.max() <= split.n_items


def test_pair_batches_visit_every_training_interaction_once_per_epoch():
    split = leave_one_out(block_cycles(n_users=6, length=7))
    seen = []
    for batch in pair_batches(split, 5, np.random.default_rng(1)):
        seen += list(zip(batch["users"].tolist(), batch["pos"].tolist()))
    expected = list(zip(split.train.users().tolist(), split.train.items.tolist()))
    assert sorted(seen) == sorted(expected)


def test_sequence_windows_make_every_transition_a_target_exactly_once():
    from genrecsys.data.splits import Part

    part = Part(np.array([0, 7, 9, 10]), np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))
    x, y, owners = sequence_windows(part, max_len=3)
    pairs = sorted((int(a), int(b)) for xs, ys in zip(x, y) for a, b in zip(xs, ys) if b)
    assert pairs == [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (8, 9)]
    # the newest window holds the longest context and is left-padded with 0
    assert x[0].tolist() == [4, 5, 6] and y[0].tolist() == [5, 6, 7]
    assert owners.tolist().count(2) == 0  # a one-item user yields no window
