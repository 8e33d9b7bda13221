"""Dataset statistics in the shape of the papers' Table 1."""
from __future__ import annotations

from genrecsys.data.schema import Dataset


def dataset_stats(ds: Dataset) -> dict:
    """Counts and densities of a dataset's interactions.

    >>> dataset_stats(ds)["sparsity"]   # doctest: +SKIP
    0.9369533063577546
    """
    users, items, inters = ds.n_users, ds.n_items, len(ds.interactions)
    return {
        "users": users,
        "items": items,
        "interactions": inters,
        "avg_actions_per_user": inters / users if users else 0.0,
        "avg_actions_per_item": inters / items if items else 0.0,
        "sparsity": 1.0 - inters / (users * items) if users and items else 1.0,
    }


def format_stats_table(stats: dict[str, dict]) -> str:
    """Markdown table, one row per dataset name: #Users #Items #Inters #Inters/U. Sparsity.

    The text ends with a newline.

    >>> print(format_stats_table({"ML-1M": dataset_stats(ml1m)}))   # doctest: +SKIP
    | Dataset | #Users | #Items | #Inters | #Inters/U. | Sparsity |
    |---|---:|---:|---:|---:|---:|
    | ML-1M | 6,040 | 3,706 | 1,000,209 | 165.6 | 95.53% |
    """
    lines = ["| Dataset | #Users | #Items | #Inters | #Inters/U. | Sparsity |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in stats.items():
        lines.append(f"| {name} | {s['users']:,} | {s['items']:,} | {s['interactions']:,} | "
                     f"{s['avg_actions_per_user']:.1f} | {s['sparsity']:.2%} |")
    return "\n".join(lines) + "\n"
