"""Shared fixtures for data tests: the real ML-100K for integration tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ml100k_cache(tmp_path_factory) -> Path:
    """GENRECSYS_CACHE when set (so repeated runs reuse one download), else a fresh temp dir."""
    env = os.environ.get("GENRECSYS_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("genrecsys-cache")


@pytest.fixture(scope="session")
def ml100k(ml100k_cache):
    from genrecsys.data.movielens import load_ml100k

    return load_ml100k(cache_dir=ml100k_cache, try_grouplens=False)
