"""What the augmentation prompts read from a dataset: item texts, categories, and each
user's reading history, most recent first, without the clicks that are evaluated.

Leakage guard. A profile or a synthetic item built from a user's test click would carry
the answer into training. So the history a prompt sees is:

- datasets with logged impressions (MIND): every interaction except the clicks of
  ``dev``/``test`` impressions (the behaviours' history column and the train clicks);
- other datasets: every interaction except each user's last ``holdout_last`` ones (2 =
  the validation and test items of a leave-one-out split; use 0 for none).

>>> # hist = user_histories(ds, cap=30)   # {user: [item, ...]} most recent first
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from genrecsys.data.schema import Dataset

CATEGORY_COLUMNS = ("category", "genres")


def _cell_values(cell) -> list[str]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    if isinstance(cell, str):
        return [v.strip() for v in cell.split("|") if v.strip()]
    return [str(v).strip() for v in cell if str(v).strip()]


def item_categories(ds: Dataset) -> dict[str, list[str]]:
    """Item -> its category values (MIND ``category``, else ``genres`` split on '|')."""
    col = next((c for c in CATEGORY_COLUMNS if c in ds.items.columns), None)
    if col is None:
        return {}
    return {str(i): _cell_values(c) for i, c in zip(ds.items["item"], ds.items[col])}


def category_vocabulary(ds: Dataset) -> list[str]:
    """The closed list of categories a synthetic item may take: those of the real catalogue
    (MovieLens' placeholder genre ``unknown`` left out)."""
    values = {v for vs in item_categories(ds).values() for v in vs}
    return sorted(values - {"unknown"})


def item_rows(ds: Dataset) -> pd.DataFrame:
    """One row per catalogue item: item, title, description, category (strings, '' if absent)."""
    items = ds.items.drop_duplicates("item")
    cats = item_categories(ds)

    def text(col: str) -> list[str]:
        return items[col].fillna("").astype(str).tolist() if col in items.columns else [""] * len(items)

    category = [", ".join(cats.get(i, [])) for i in items["item"]]
    if "subcategory" in items.columns:  # GENRE's summarizer reads both
        category = [f"{c} / {s}" if s else c for c, s in zip(category, text("subcategory"))]
    return pd.DataFrame({"item": items["item"].tolist(), "title": text("title"),
                         "description": text("abstract") if "abstract" in items.columns else text("description"),
                         "category": category})


def _visible_interactions(ds: Dataset, holdout_last: int) -> pd.DataFrame:
    inter = ds.interactions.reset_index(drop=True).assign(_row=lambda d: np.arange(len(d)))
    if ds.impressions is not None:
        imp = ds.impressions
        held = imp[(imp["label"] == 1) & (imp["part"] != "train")][["user", "item", "timestamp"]].drop_duplicates()
        merged = inter.merge(held.assign(_held=True), on=["user", "item", "timestamp"], how="left")
        return merged[merged["_held"].isna()].drop(columns="_held")
    if holdout_last <= 0:
        return inter
    inter = inter.sort_values(["user", "timestamp", "_row"], kind="stable")
    pos_from_end = inter.groupby("user").cumcount(ascending=False)
    return inter[pos_from_end >= holdout_last]


def user_histories(ds: Dataset, cap: int | None = None, holdout_last: int = 2) -> dict[str, list[str]]:
    """User -> items read, most recent first (ties: later file rows first), at most ``cap``.

    Repeated reads of one item count once, at their most recent position. Users with no
    visible interaction map to an empty list.
    """
    inter = _visible_interactions(ds, holdout_last)
    inter = inter.sort_values(["user", "timestamp", "_row"], ascending=[True, False, False], kind="stable")
    inter = inter.drop_duplicates(["user", "item"], keep="first")
    out: dict[str, list[str]] = {str(u): [] for u in ds.users["user"]}
    for user, group in inter.groupby("user", sort=False):
        items = group["item"].tolist()
        out[str(user)] = items[:cap] if cap else items
    return out


def new_users(ds: Dataset, histories: Mapping[str, list[str]], min_len: int = 1, max_len: int = 4) -> list[str]:
    """Users whose reading history has ``min_len``..``max_len`` items (GENRE's new users).

    MIND's user table records the behaviours' history length (``history_length``); when it
    is there it decides, as in the paper. Otherwise the visible history length decides.
    """
    if "history_length" in ds.users.columns:
        lengths = dict(zip(ds.users["user"].astype(str), ds.users["history_length"].astype(int)))
    else:
        lengths = {u: len(h) for u, h in histories.items()}
    return sorted(u for u, n in lengths.items() if min_len <= n <= max_len)
