"""Synthetic datasets: tiny ones whose right answer is known (tests, examples), and large
ones with MovieLens-like statistics for cost curves (``write_ml_like``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError


def block_cycles(n_users: int = 40, n_groups: int = 2, items_per_group: int = 10, length: int = 9,
                 seed: int = 0) -> Dataset:
    """Users in group g walk the cycle of that group's items from a random offset.

    So the next item is determined by the last one (sequence models can learn it), and
    the held-out items lie in the user's own block (collaborative models can learn it).
    Items of group g are `g*items_per_group + 1 ... (g+1)*items_per_group`.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        g = u % n_groups
        start = rng.integers(items_per_group)
        for t in range(length):
            item = g * items_per_group + (start + t) % items_per_group + 1
            rows.append((f"u{u}", f"i{item}", 1_000 + t, 5.0))
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    n_items = n_groups * items_per_group
    items = pd.DataFrame({"item": [f"i{i}" for i in range(1, n_items + 1)],
                          "title": [f"Item {i} (group {(i - 1) // items_per_group})" for i in range(1, n_items + 1)],
                          "category": [f"g{(i - 1) // items_per_group}" for i in range(1, n_items + 1)]})
    users = pd.DataFrame({"user": [f"u{u}" for u in range(n_users)]})
    return Dataset("block-cycles", inter, items, users)


def ml_like_shape(n_interactions: int) -> tuple[int, int]:
    """(users, items) of a MovieLens-like dataset of ``n_interactions``: ~100 interactions
    per user (ML-100K has 106, ML-20M 144) and items growing as the square root (ML-100K:
    1,682 items, ML-20M: 26,744): 1M -> 10,000 x 20,000, 100M -> 1,000,000 x 200,000."""
    return max(10, n_interactions // 100), max(100, int(20 * n_interactions ** 0.5))


def write_ml_like(directory: str | Path, n_interactions: int, *, seed: int = 0, chunk_users: int = 50_000,
                  activity_sigma: float = 1.0, popularity_exponent: float = 0.9, popularity_offset: float = 100.0,
                  min_activity: int = 5) -> Path:
    """Write a synthetic dataset with MovieLens-like statistics as a genrecsys dataset
    directory, streaming: memory is bounded by ``chunk_users`` users' rows, whatever
    ``n_interactions`` is (1M, 10M, 100M).

    - user activity is heavy-tailed: ``min_activity`` each, the rest dealt with probabilities
      drawn from a lognormal law (``activity_sigma``); the total is ``n_interactions`` exactly;
    - item popularity is Zipf-like: the item of rank r is drawn with weight
      (r + ``popularity_offset``)^-``popularity_exponent``;
    - timestamps: each user starts at a uniform time within three years and acts with
      exponential gaps (mean one day), so per-user order is chronological and ties are rare.
    At 100K interactions this gives a median user of 63 interactions (ML-100K: 65), a 90th
    percentile of 219 (244), and 43% of interactions on the top 10% of items (43%).
    The user and item columns are written dictionary-encoded (one string per distinct id), so
    loading them back gives categorical columns, without one Python string per row.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genrecsys.files import building_dir

    if n_interactions < 1000:
        raise GenrecsysError(f"write_ml_like: n_interactions must be at least 1000, got {n_interactions}")
    n_users, n_items = ml_like_shape(n_interactions)
    rng = np.random.default_rng(seed)
    if n_users * min_activity > n_interactions:
        raise GenrecsysError(f"write_ml_like: {n_users} users x min_activity {min_activity} > {n_interactions}")
    weight = rng.lognormal(0.0, activity_sigma, n_users)
    # Everyone gets min_activity, the rest is dealt by weight: the total is exact.
    counts = min_activity + rng.multinomial(n_interactions - n_users * min_activity, weight / weight.sum())
    rank_weight = (np.arange(n_items) + popularity_offset) ** -popularity_exponent
    popularity = rank_weight / rank_weight.sum()
    item_perm = rng.permutation(n_items)  # item ids are not in popularity order
    user_dict = pa.array([f"u{u}" for u in range(n_users)], pa.string())
    item_dict = pa.array([f"i{i}" for i in range(n_items)], pa.string())
    schema = pa.schema([("user", pa.dictionary(pa.int32(), pa.string())), ("item", pa.dictionary(pa.int32(), pa.string())),
                        ("timestamp", pa.int64()), ("rating", pa.float32())])
    start_time, span, gap = 1_500_000_000, 3 * 365 * 86_400, 86_400.0
    target = Path(directory)
    with building_dir(target, replace=True) as tmp:
        with pq.ParquetWriter(tmp / "interactions.parquet", schema) as writer:
            for lo in range(0, n_users, chunk_users):
                c = counts[lo:lo + chunk_users]
                users = np.repeat(np.arange(lo, lo + len(c), dtype=np.int32), c)
                items = item_perm[rng.choice(n_items, size=len(users), p=popularity)].astype(np.int32)
                steps = rng.exponential(gap, len(users))
                starts = np.concatenate([[0], np.cumsum(c)[:-1]])
                csum = np.cumsum(steps)
                within = csum - np.repeat(csum[starts] - steps[starts], c)  # per-user running time
                ts = (start_time + np.repeat(rng.integers(0, span, len(c)), c) + within).astype(np.int64)
                ratings = rng.integers(1, 6, len(users)).astype(np.float32)
                table = pa.table([pa.DictionaryArray.from_arrays(pa.array(users), user_dict),
                                  pa.DictionaryArray.from_arrays(pa.array(items), item_dict),
                                  pa.array(ts), pa.array(ratings)], schema=schema)
                writer.write_table(table)
        pq.write_table(pa.table({"item": item_dict, "title": pa.array([f"Item {i}" for i in range(n_items)])}),
                       tmp / "items.parquet")
        pq.write_table(pa.table({"user": user_dict}), tmp / "users.parquet")
        (tmp / "meta.json").write_text(json.dumps({"name": f"ml-like-{n_interactions}", "seed": seed,
                                                  "users": n_users, "items": n_items}))
    return target
