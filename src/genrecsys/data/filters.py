"""Interaction filters: implicit feedback, k-core, duplicate removal.

Each filter returns a new `Dataset` and never mutates its input. Item and user tables
are passed through unchanged (attributes of filtered-out ids are harmless and keep
titles available). A filter that would leave no interactions raises `GenrecsysError`
naming itself, because an empty dataset only fails later and further from the cause.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError


def _with(ds: Dataset, inter: pd.DataFrame, what: str) -> Dataset:
    if len(inter) == 0:
        raise GenrecsysError(f"{ds.name}: {what} removed every interaction ({len(ds.interactions)} before)")
    return Dataset(ds.name, inter.reset_index(drop=True), ds.items, ds.users, ds.impressions,  # __post_init__ copies
                   ds.synthetic)


def to_implicit(ds: Dataset, threshold: float | None) -> Dataset:
    """Keep interactions with rating >= `threshold` and set every rating to 1.

    `threshold=None` keeps every interaction (all ratings count as positives, as
    RecBole does on ML-100K).

    >>> to_implicit(ds, 4.0)   # doctest: +SKIP
    """
    inter = ds.interactions
    if threshold is not None:
        inter = inter[inter["rating"] >= threshold]
    inter = inter.assign(rating=np.ones(len(inter), dtype=np.float32))
    return _with(ds, inter, f"to_implicit(threshold={threshold})")


def k_core(ds: Dataset, min_user: int, min_item: int) -> Dataset:
    """Drop users with < `min_user` and items with < `min_item` interactions, until stable.

    Removing a user can push an item below its minimum and vice versa, hence the loop.
    Counts include duplicates; call `drop_duplicates` first to count distinct items.
    """
    if min_user < 0 or min_item < 0:
        raise GenrecsysError(f"k_core: min_user and min_item must be >= 0, got {min_user} and {min_item}")
    inter = ds.interactions
    while True:
        keep = (inter.groupby("user")["item"].transform("size") >= min_user) & \
               (inter.groupby("item")["user"].transform("size") >= min_item)
        if keep.all():
            break
        inter = inter[keep]
    return _with(ds, inter, f"k_core(min_user={min_user}, min_item={min_item})")


def drop_duplicates(ds: Dataset, keep: str = "last") -> Dataset:
    """Keep one interaction per (user, item): the 'first' or 'last' in time (ties: file order).

    The kept rows stay in their original file order.
    """
    if keep not in ("first", "last"):
        raise GenrecsysError(f"drop_duplicates: keep must be 'first' or 'last', got {keep!r}")
    inter = ds.interactions
    # Stable sort by time, so "last" means latest, and file order breaks timestamp ties.
    by_time = inter.sort_values("timestamp", kind="stable")
    kept = by_time.drop_duplicates(["user", "item"], keep=keep).index
    return _with(ds, inter.loc[np.sort(kept)], f"drop_duplicates(keep={keep!r})")
