"""Synthetic (LLM-generated) items of an augmented variant, as training input.

GENRE's personalized generator (§3.4) extends a new user's *browsing history* with
invented items. A variant directory keeps them apart from the catalogue
(``synthetic_items.parquet``, loaded into ``Dataset.synthetic``); here they get indices
a text-based model can encode:

- synthetic row k (in table order) is item index ``n_items + 1 + k``, after every real
  item, so ``split.n_items`` / ``split.item_ids`` and everything indexed by them (the
  catalogue scores, negatives, impressions, targets) stay real-only;
- :func:`synthetic_history` is, per user, the indices of that user's synthetic items in
  generation order; training batches put them *before* the real history, so the real
  clicks stay the most recent and survive ``max_history`` trimming.

Only models that encode an item from its text can use an item they never saw in
training interactions: the news / CTR models (``item_inputs`` encodes the synthetic rows
from their own title, abstract and category). ID-based models (Pop, SASRec, ...) have
no embedding for such an item and ignore synthetic items.

>>> # syn = synthetic_history(split)   # None without synthetic items
>>> # syn.of(u)                         # -> array([n_items + 1, n_items + 2]) for a new user u
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from genrecsys.data.splits import Part, SplitData

_KEY = "synthetic_history"


def synthetic_items(split: SplitData) -> pd.DataFrame:
    """The split's synthetic items (row k = item index ``n_items + 1 + k``); empty when the
    dataset has none."""
    syn = split.dataset.synthetic
    if syn is None or len(syn) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=str) for c in ("item", "user", "title", "abstract", "category")})
    return syn.reset_index(drop=True)


def synthetic_history(split: SplitData) -> Part | None:
    """Per user (split order), the indices of their synthetic items in generation order;
    None when the dataset has no synthetic items (then training is exactly as before).
    Synthetic items of users the split does not know are encoded but never read."""
    if _KEY in split.meta:
        return split.meta[_KEY]
    syn = synthetic_items(split)
    if len(syn) == 0:
        split.meta[_KEY] = None
        return None
    user_index = {u: i for i, u in enumerate(split.user_ids)}
    rows = np.array([user_index.get(str(u), -1) for u in syn["user"]], dtype=np.int64)
    index = split.n_items + 1 + np.arange(len(syn), dtype=np.int64)
    known = rows >= 0
    rows, index = rows[known], index[known]
    order = np.argsort(rows, kind="stable")  # per user, keep the table's (generation) order
    counts = np.bincount(rows, minlength=split.n_users)
    part = Part(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), index[order])
    split.meta[_KEY] = part
    return part
