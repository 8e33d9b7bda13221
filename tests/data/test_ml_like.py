"""Synthetic MovieLens-like data for cost curves: the statistics it promises, streamed to
Parquet with dictionary-encoded ids that load as categoricals and split exactly as strings."""
import numpy as np
import pandas as pd
import pytest

from genrecsys.data.schema import Dataset
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import ml_like_shape, write_ml_like
from genrecsys.errors import GenrecsysError


def test_ml_like_has_the_promised_shape_and_statistics(tmp_path):
    d = write_ml_like(tmp_path / "ml", 100_000, chunk_users=300)  # several row groups
    inter = pd.read_parquet(d / "interactions.parquet")
    n_users, n_items = ml_like_shape(100_000)
    assert len(inter) == 100_000 and inter["user"].nunique() == n_users == 1000
    per_user = inter.groupby("user", observed=True).size().to_numpy()
    assert per_user.min() >= 5 and 45 <= np.median(per_user) <= 85 and np.quantile(per_user, 0.9) > 2 * np.median(per_user)
    by_item = np.sort(inter["item"].value_counts().to_numpy())[::-1]
    assert 0.35 <= by_item[: n_items // 10].sum() / len(inter) <= 0.5  # ML-100K: 43% on the top 10%
    ts = inter["timestamp"].to_numpy()
    same_user = inter["user"].to_numpy()[1:] == inter["user"].to_numpy()[:-1]
    assert (np.diff(ts)[same_user] >= 0).all()  # chronological within a user
    again = pd.read_parquet(write_ml_like(tmp_path / "again", 100_000, chunk_users=300) / "interactions.parquet")
    assert again.equals(inter)  # a seed gives the same data


def test_categorical_ids_split_exactly_as_string_ids(tmp_path):
    ds = Dataset.load(write_ml_like(tmp_path / "ml", 20_000))
    assert isinstance(ds.interactions["user"].dtype, pd.CategoricalDtype)  # no Python string per row
    as_str = Dataset("strings", ds.interactions.astype({"user": str, "item": str}))
    a, b = leave_one_out(ds), leave_one_out(as_str)
    assert list(a.user_ids) == list(b.user_ids) and list(a.item_ids) == list(b.item_ids)
    for part in ("train", "valid", "test"):
        assert np.array_equal(getattr(a, part).items, getattr(b, part).items)
        assert np.array_equal(getattr(a, part).indptr, getattr(b, part).indptr)


def test_categorical_ids_that_collide_as_strings_become_one_id():
    inter = pd.DataFrame({"user": pd.Categorical([1, "1", 2]), "item": ["a", "b", "c"], "timestamp": [1, 2, 3]})
    ds = Dataset("mixed", inter)
    assert ds.n_users == 2


def test_too_small_a_request_is_a_one_line_error(tmp_path):
    with pytest.raises(GenrecsysError, match="at least 1000"):
        write_ml_like(tmp_path / "x", 10)
