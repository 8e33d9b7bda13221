"""User-side side information for GENRE's interest fusion (eq. (1)): each user's
interested topics and regions, read from user-table columns.

A cell is a list of strings, a '|'-separated string, or empty/missing (no profile).
The GENRE user profiler fills these columns; here they are only read.

>>> # p = user_profiles(split, "topics", "regions", max_topics=10, max_regions=5)
>>> # p.topics.shape   -> (n_users, 10), ids 1..p.n_topics, 0 = padding
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrecsys.data.itemtext import _values
from genrecsys.errors import GenrecsysError


@dataclass
class UserProfiles:
    topics: np.ndarray  # (U, Kt) int64, 0 = padding
    regions: np.ndarray  # (U, Kr) int64
    n_topics: int
    n_regions: int


def _ids(cells: list[list[str]], width: int) -> tuple[np.ndarray, int]:
    vocab = {v: i + 1 for i, v in enumerate(sorted({v for c in cells for v in c}))}
    out = np.zeros((len(cells), max(width, 1)), dtype=np.int64)
    for row, values in enumerate(cells):
        ids = [vocab[v] for v in values[:width]]
        out[row, :len(ids)] = ids
    return out, len(vocab)


def user_profiles(split, topics_column: str = "topics", regions_column: str = "regions", max_topics: int = 10,
                  max_regions: int = 5) -> UserProfiles:
    """Topic and region ids per user index of `split` (users missing from the table: none)."""
    users = split.dataset.users
    missing = [c for c in (topics_column, regions_column) if c not in users.columns]
    if missing:
        raise GenrecsysError(f"{split.dataset.name}: interest fusion needs user-table column(s) {', '.join(missing)} "
                             "(lists of topics / regions, e.g. from the GENRE user profiler)")
    table = users.drop_duplicates("user").set_index("user").reindex(split.user_ids)
    topics, n_topics = _ids([_values(c) for c in table[topics_column]], max_topics)
    regions, n_regions = _ids([_values(c) for c in table[regions_column]], max_regions)
    return UserProfiles(topics, regions, n_topics, n_regions)
