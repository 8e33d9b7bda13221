"""Cold-start simulation on a small leave-one-out split."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrecsys.data.coldstart import simulate_cold_start
from genrecsys.data.schema import Dataset
from genrecsys.data.splits import leave_one_out
from genrecsys.errors import GenrecsysError


def _split(lengths: list[int]):
    """User k has `lengths[k]` interactions with items k*100+0, k*100+1, ... in time order."""
    rows = [(f"u{k:02d}", f"i{k * 100 + t:04d}", t) for k, n in enumerate(lengths) for t in range(n)]
    return leave_one_out(Dataset("toy", pd.DataFrame(rows, columns=["user", "item", "timestamp"])))


LENGTHS = [12, 10, 9, 8, 5, 4, 3, 2, 11, 20, 7, 6]  # u07 has 2 -> train-only, not evaluable


def test_chosen_users_keep_their_most_recent_train_items():
    split = _split(LENGTHS)
    cold = simulate_cold_start(split, fraction=1.0, min_len=1, max_len=4, seed=3)
    for u in np.flatnonzero(cold.new_user):
        before, after = split.train.of(u), cold.split.train.of(u)
        assert 1 <= len(after) <= 4 if len(before) > 4 else len(after) == len(before)
        assert np.array_equal(after, before[len(before) - len(after):])  # a suffix: the latest items


def test_fraction_of_evaluable_users_become_new():
    split = _split(LENGTHS)
    cold = simulate_cold_start(split, fraction=0.5, seed=0)
    evaluable = split.eval_users("test")
    assert cold.new_user.sum() == round(0.5 * len(evaluable))
    assert not cold.new_user[np.setdiff1d(np.arange(split.n_users), evaluable)].any()
    warm = ~cold.new_user
    for u in np.flatnonzero(warm):
        assert np.array_equal(cold.split.train.of(u), split.train.of(u))


def test_short_histories_are_untouched_but_counted_as_new():
    split = _split(LENGTHS)
    cold = simulate_cold_start(split, fraction=1.0, min_len=1, max_len=4, seed=0)
    short = split.eval_users("test")[split.train.lengths()[split.eval_users("test")] <= 4]
    assert len(short) > 0
    for u in short:
        assert cold.new_user[u]
        assert np.array_equal(cold.split.train.of(u), split.train.of(u))
    lengths = cold.split.train.lengths()[cold.new_user]
    assert lengths.max() <= 4


def test_targets_are_unchanged_and_input_is_not_mutated():
    split = _split(LENGTHS)
    train_before = (split.train.indptr.copy(), split.train.items.copy())
    cold = simulate_cold_start(split, fraction=0.7, seed=1)
    assert np.array_equal(split.train.indptr, train_before[0]) and np.array_equal(split.train.items, train_before[1])
    assert np.array_equal(cold.split.valid.items, split.valid.items)
    assert np.array_equal(cold.split.test.items, split.test.items)
    assert cold.split.valid.items is not split.valid.items  # the result owns its arrays
    assert cold.split.meta["cold_start"]["n_new"] == int(cold.new_user.sum())
    assert "cold_start" not in split.meta


def test_same_seed_same_result_other_seed_differs():
    split = _split(LENGTHS * 5)
    a = simulate_cold_start(split, 0.3, seed=7)
    b = simulate_cold_start(split, 0.3, seed=7)
    c = simulate_cold_start(split, 0.3, seed=8)
    assert np.array_equal(a.new_user, b.new_user) and np.array_equal(a.split.train.items, b.split.train.items)
    assert not np.array_equal(a.new_user, c.new_user)


def test_truncated_lengths_cover_the_requested_range():
    split = _split([30] * 200)
    cold = simulate_cold_start(split, 1.0, min_len=2, max_len=5, seed=0)
    assert set(cold.split.train.lengths()[cold.new_user]) == {2, 3, 4, 5}


@pytest.mark.parametrize("kwargs, message", [
    ({"fraction": 1.5}, "fraction must be in"),
    ({"fraction": 0.5, "min_len": 0}, "1 <= min_len <= max_len"),
    ({"fraction": 0.5, "min_len": 5, "max_len": 4}, "1 <= min_len <= max_len"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(GenrecsysError, match=message):
        simulate_cold_start(_split(LENGTHS), **kwargs)
