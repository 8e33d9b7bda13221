"""Tiny data for the RELAND tests: three taste groups with real titles, distinct histories, and a
behaviour matrix whose right answer is known (each user sits near its group's axis).

The fixtures are imported by the test modules rather than kept in a conftest.py: under
``--doctest-modules`` two sub-directory conftest.py files collide as module "conftest"."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrecsys.data.schema import Dataset
from genrecsys.data.splits import leave_one_out

GROUPS = {
    "Sci-Fi": ["Alien", "Solaris", "Gattaca", "Brazil", "Contact", "Sphere", "Stalker", "Dune"],
    "Romance": ["Notting Hill", "Sabrina", "Casablanca", "Amelie", "Roman Holiday", "Emma", "Persuasion", "Ghost"],
    "Crime": ["Heat", "Ronin", "Fargo", "Usual Suspects, The", "Chinatown", "Seven", "Casino", "Goodfellas"],
}


def group_dataset(n_users: int = 24, length: int = 6, extra_titles: dict[int, str] | None = None) -> Dataset:
    """User u is in group u % 3 and walks that group's 8 titles from offset u // 3, so no
    two users share a history (while n_users <= 24). Item i of group g is g * 8 + i + 1."""
    genres = list(GROUPS)
    rows = []
    for u in range(n_users):
        g = u % 3
        for t in range(length):
            item = g * 8 + (u // 3 + t) % 8 + 1
            rows.append((f"u{u}", f"i{item}", 1_000 + t, 5.0))
    titles = [t for g in genres for t in GROUPS[g]]
    for item, title in (extra_titles or {}).items():
        titles[item - 1] = title
    items = pd.DataFrame({"item": [f"i{i}" for i in range(1, 25)], "title": titles,
                          "year": [str(1970 + i) for i in range(1, 25)],
                          "genres": [genres[(i - 1) // 8] for i in range(1, 25)]})
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    return Dataset("groups", inter, items, pd.DataFrame({"user": [f"u{u}" for u in range(n_users)]}))


def group_matrix(split, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """M (U + 1, 4): user u near the axis of its group (3 axes), a little noise; row 0 zero."""
    rng = np.random.default_rng(seed)
    m = np.zeros((split.n_users + 1, 4), dtype=np.float32)
    for u, raw in enumerate(split.user_ids):
        m[u + 1, int(raw[1:]) % 3] = 1.0
        m[u + 1] += rng.normal(scale=noise, size=4)
    return m


@pytest.fixture
def split():
    return leave_one_out(group_dataset())


@pytest.fixture
def matrix(split):
    return group_matrix(split)


@pytest.fixture
def echo_llm(tmp_path):
    from genrecsys.config import LLMConfig
    from genrecsys.llm.client import LLM, EchoBackend

    llm = LLM(LLMConfig(), backend=EchoBackend(), cache_path=tmp_path / "llm-cache.sqlite")
    yield llm
    llm.close()
