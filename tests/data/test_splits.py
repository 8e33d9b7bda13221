"""Splits: leakage, the tie rule, short users, ratio boundaries, determinism, concat."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrecsys.data.schema import Dataset
from genrecsys.data.load import make_split
from genrecsys.data.splits import Part, concat_parts, leave_one_out, ratio_split
from genrecsys.errors import GenrecsysError


def _ds(rows: list[tuple[str, str, int]]) -> Dataset:
    return Dataset("toy", pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


def _raw(split, part: Part, u: int) -> list[str]:
    return [str(x) for x in split.item_ids[part.of(u)]]


def test_loo_holds_out_the_latest_two_without_leakage():
    # File order is deliberately not chronological.
    ds = _ds([("u", "c", 30), ("u", "a", 10), ("u", "e", 50), ("u", "b", 20), ("u", "d", 40),
              ("v", "z", 3), ("v", "x", 1), ("v", "y", 2)])
    split = leave_one_out(ds)
    u, v = split.user_index("u"), split.user_index("v")
    assert _raw(split, split.train, u) == ["a", "b", "c"]  # chronological
    assert _raw(split, split.valid, u) == ["d"] and _raw(split, split.test, u) == ["e"]
    assert _raw(split, split.train, v) == ["x"]
    for w in (u, v):
        held_out = set(split.valid.of(w)) | set(split.test.of(w))
        assert not held_out & set(split.train.of(w))
    assert np.array_equal(split.item_ids[1:], np.sort(split.item_ids[1:]))  # 0 is padding
    assert split.item_ids[0] == ""


def test_equal_timestamps_keep_file_order():
    # a, b, c share a timestamp; d is earlier but comes last in the file.
    split = leave_one_out(_ds([("u", "a", 5), ("u", "b", 5), ("u", "c", 5), ("u", "d", 1)]))
    assert _raw(split, split.train, 0) == ["d", "a"]
    assert _raw(split, split.valid, 0) == ["b"] and _raw(split, split.test, 0) == ["c"]


def test_users_with_fewer_than_three_interactions_are_train_only():
    split = leave_one_out(_ds([("short", "a", 1), ("short", "b", 2), ("one", "a", 1),
                               ("ok", "a", 1), ("ok", "b", 2), ("ok", "c", 3)]))
    short, one, ok = (split.user_index(x) for x in ("short", "one", "ok"))
    assert _raw(split, split.train, short) == ["a", "b"] and _raw(split, split.train, one) == ["a"]
    for part in (split.valid, split.test):
        assert part.lengths()[short] == 0 and part.lengths()[one] == 0
    assert split.eval_users("test").tolist() == [ok]


@pytest.mark.parametrize("n, ratios, sizes", [
    (10, (0.8, 0.1, 0.1), (8, 1, 1)),
    (10, (0.7, 0.2, 0.1), (7, 2, 1)),  # 0.7 + 0.2 = 0.8999...: the epsilon keeps 9, not 8
    (5, (0.8, 0.1, 0.1), (4, 0, 1)),
    (3, (0.8, 0.1, 0.1), (2, 0, 1)),
    (1, (0.8, 0.1, 0.1), (0, 0, 1)),
])
def test_ratio_split_boundaries_are_floor_of_cumulative_ratios(n, ratios, sizes):
    split = ratio_split(_ds([("u", f"i{t:02d}", t) for t in range(n)]), ratios)
    got = (split.train.nnz, split.valid.nnz, split.test.nnz)
    assert got == sizes
    everything = np.concatenate([split.train.of(0), split.valid.of(0), split.test.of(0)])
    assert np.array_equal(everything, np.arange(1, n + 1))  # chronological, nothing lost


def test_random_ratio_split_is_deterministic_under_seed():
    ds = _ds([(f"u{k}", f"i{t:02d}", t) for k in range(5) for t in range(20)])
    a = make_split(ds, "random_ratio", seed=3)
    b = make_split(ds, "random_ratio", seed=3)
    c = make_split(ds, "random_ratio", seed=4)
    assert a.protocol == "random_ratio"
    for p, q in ((a.train, b.train), (a.valid, b.valid), (a.test, b.test)):
        assert np.array_equal(p.items, q.items) and np.array_equal(p.indptr, q.indptr)
    assert not np.array_equal(a.train.items, c.train.items)
    assert not np.array_equal(a.train.items, ratio_split(ds).train.items)  # really shuffled
    for u in range(5):
        parts = np.concatenate([a.train.of(u), a.valid.of(u), a.test.of(u)])
        assert sorted(parts) == list(range(1, 21))


def test_concat_parts_puts_a_before_b_per_user():
    a = Part(np.array([0, 2, 2, 3]), np.array([1, 2, 3]))
    b = Part(np.array([0, 1, 3, 3]), np.array([9, 8, 7]))
    out = concat_parts(a, b)
    assert out.indptr.tolist() == [0, 3, 5, 6]
    assert [out.of(u).tolist() for u in range(3)] == [[1, 2, 9], [8, 7], [3]]


def test_history_for_test_is_train_then_valid():
    split = leave_one_out(_ds([("u", "a", 1), ("u", "b", 2), ("u", "c", 3), ("u", "d", 4)]))
    assert _raw(split, split.history("test"), 0) == ["a", "b", "c"]
    assert _raw(split, split.history("valid"), 0) == ["a", "b"]


def test_unknown_split_lists_the_choices():
    with pytest.raises(GenrecsysError, match="loo, ratio, random_ratio"):
        make_split(_ds([("u", "a", 1)]), "temporal")


@pytest.mark.integration
def test_ml100k_ties_and_where_recbole_orders_them_differently(ml100k):
    """415 users have their last two interactions at one timestamp. RecBole sorts min-max
    scaled float32 timestamps (~2 s resolution), which changes 5 valid and 4 test targets."""
    inter = ml100k.interactions
    users = pd.factorize(inter["user"], sort=True)[0]
    ts = inter["timestamp"].to_numpy()
    ends = np.cumsum(np.bincount(users))
    ours = np.lexsort((np.arange(len(ts)), ts, users))
    assert int((ts[ours[ends - 1]] == ts[ours[ends - 2]]).sum()) == 415

    scaled = ((ts - ts.min()) / (ts.max() - ts.min())).astype(np.float32)
    recbole = np.lexsort((np.arange(len(ts)), scaled, users))
    items = inter["item"].to_numpy()
    split = leave_one_out(ml100k)
    assert np.array_equal(split.item_ids[split.test.items], items[ours[ends - 1]])  # same rule as splits.py
    assert int((items[ours[ends - 2]] != items[recbole[ends - 2]]).sum()) == 5
    assert int((items[ours[ends - 1]] != items[recbole[ends - 1]]).sum()) == 4
