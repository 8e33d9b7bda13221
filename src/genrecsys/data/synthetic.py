"""Tiny synthetic datasets whose right answer is known, for tests and examples."""
from __future__ import annotations

import numpy as np
import pandas as pd

from genrecsys.data.schema import Dataset


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
