"""Filters on tiny hand-built datasets."""
from __future__ import annotations

import pandas as pd
import pytest

from genrecsys.data.filters import drop_duplicates, k_core, to_implicit
from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError


def _ds(rows: list[tuple[str, str, int, float]]) -> Dataset:
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    return Dataset("tiny", inter, pd.DataFrame({"item": ["a", "b", "c"], "title": ["A", "B", "C"]}))


def _pairs(ds: Dataset) -> list[tuple[str, str]]:
    return list(zip(ds.interactions["user"], ds.interactions["item"]))


def test_to_implicit_keeps_ratings_at_or_above_threshold_as_ones():
    ds = _ds([("u1", "a", 1, 5.0), ("u1", "b", 2, 3.0), ("u2", "a", 3, 4.0), ("u2", "c", 4, 3.9)])
    out = to_implicit(ds, 4.0)
    assert _pairs(out) == [("u1", "a"), ("u2", "a")]
    assert out.interactions["rating"].tolist() == [1.0, 1.0]


def test_to_implicit_without_threshold_keeps_everything():
    ds = _ds([("u1", "a", 1, 5.0), ("u1", "b", 2, 1.0)])
    out = to_implicit(ds, None)
    assert _pairs(out) == _pairs(ds)
    assert out.interactions["rating"].tolist() == [1.0, 1.0]


def test_filters_never_mutate_their_input():
    ds = _ds([("u1", "a", 1, 5.0), ("u1", "a", 2, 1.0), ("u2", "b", 3, 2.0)])
    before = ds.interactions.copy()
    to_implicit(ds, 3.0), k_core(ds, 2, 1), drop_duplicates(ds)
    assert ds.interactions.equals(before)


def test_k_core_iterates_until_stable():
    # u3 has 1 interaction -> removed; then item c has 1 -> removed; then u2 has 1 -> removed.
    ds = _ds([("u1", "a", 1, 1.0), ("u1", "b", 2, 1.0), ("u2", "a", 3, 1.0), ("u2", "c", 4, 1.0),
              ("u3", "c", 5, 1.0), ("u4", "a", 6, 1.0), ("u4", "b", 7, 1.0)])
    out = k_core(ds, min_user=2, min_item=2)
    assert _pairs(out) == [("u1", "a"), ("u1", "b"), ("u4", "a"), ("u4", "b")]
    counts_u = out.interactions.groupby("user").size()
    counts_i = out.interactions.groupby("item").size()
    assert counts_u.min() >= 2 and counts_i.min() >= 2


def test_k_core_keeps_item_table_for_titles():
    ds = _ds([("u1", "a", 1, 1.0), ("u1", "b", 2, 1.0), ("u2", "c", 3, 1.0)])
    assert k_core(ds, 2, 1).titles() == {"a": "A", "b": "B", "c": "C"}


def test_drop_duplicates_keeps_latest_or_earliest_in_file_order():
    ds = _ds([("u1", "a", 5, 1.0), ("u1", "b", 2, 2.0), ("u1", "a", 3, 3.0), ("u2", "a", 1, 4.0)])
    last = drop_duplicates(ds, keep="last")
    assert last.interactions["rating"].tolist() == [1.0, 2.0, 4.0]  # ts 5 is the latest "a" of u1
    first = drop_duplicates(ds, keep="first")
    assert first.interactions["rating"].tolist() == [2.0, 3.0, 4.0]


def test_drop_duplicates_equal_timestamps_fall_back_to_file_order():
    ds = _ds([("u1", "a", 7, 1.0), ("u1", "a", 7, 2.0)])
    assert drop_duplicates(ds, keep="last").interactions["rating"].tolist() == [2.0]
    assert drop_duplicates(ds, keep="first").interactions["rating"].tolist() == [1.0]


def test_drop_duplicates_rejects_unknown_keep():
    with pytest.raises(GenrecsysError, match="'first' or 'last'"):
        drop_duplicates(_ds([("u1", "a", 1, 1.0)]), keep="max")


def test_filter_that_empties_the_dataset_names_itself():
    ds = _ds([("u1", "a", 1, 2.0), ("u2", "b", 2, 3.0)])
    with pytest.raises(GenrecsysError, match=r"to_implicit\(threshold=4.0\) removed every interaction"):
        to_implicit(ds, 4.0)
    with pytest.raises(GenrecsysError, match=r"k_core\(min_user=5, min_item=5\) removed every interaction"):
        k_core(ds, 5, 5)


def test_k_core_rejects_negative_minimum():
    with pytest.raises(GenrecsysError, match="must be >= 0"):
        k_core(_ds([("u1", "a", 1, 1.0)]), -1, 0)
