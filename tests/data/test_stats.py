"""Dataset statistics against hand-computed values."""
from __future__ import annotations

import pandas as pd
import pytest

from genrecsys.data.schema import Dataset
from genrecsys.data.stats import dataset_stats, format_stats_table


def test_dataset_stats_counts_and_sparsity():
    inter = pd.DataFrame({"user": ["u1", "u1", "u1", "u2"], "item": ["a", "b", "c", "a"]})
    s = dataset_stats(Dataset("tiny", inter))
    assert (s["users"], s["items"], s["interactions"]) == (2, 3, 4)
    assert s["avg_actions_per_user"] == 2.0
    assert s["avg_actions_per_item"] == pytest.approx(4 / 3)
    assert s["sparsity"] == pytest.approx(1 - 4 / 6)


def test_dataset_stats_of_empty_dataset_has_no_division_by_zero():
    s = dataset_stats(Dataset("empty", pd.DataFrame({"user": [], "item": []})))
    assert s["interactions"] == 0 and s["avg_actions_per_user"] == 0.0 and s["sparsity"] == 1.0


def test_stats_table_matches_the_papers_table_1():
    # RELAND's Table 1 row for ML-1M: 6,040 | 3,953 | 1,000,000 | 165.6 | 95.81%
    ml1m = {"users": 6040, "items": 3953, "interactions": 1_000_000,
            "avg_actions_per_user": 1_000_000 / 6040, "sparsity": 1 - 1_000_000 / (6040 * 3953)}
    table = format_stats_table({"ML-1M": ml1m})
    assert table.endswith("|\n")
    assert table.splitlines() == [
        "| Dataset | #Users | #Items | #Inters | #Inters/U. | Sparsity |",
        "|---|---:|---:|---:|---:|---:|",
        "| ML-1M | 6,040 | 3,953 | 1,000,000 | 165.6 | 95.81% |",
    ]
