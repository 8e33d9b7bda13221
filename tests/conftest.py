"""Shared fixtures: tiny synthetic data saved as a dataset directory."""
from __future__ import annotations

import os

import pytest

# Tests never reach a hub; keep Hugging Face libraries offline if they get imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def block_dataset_dir(tmp_path_factory):
    from genrecsys.data.synthetic import block_cycles

    path = tmp_path_factory.mktemp("data") / "block-cycles"
    block_cycles().save(path)
    return path
