"""The canonical dataset: interactions + item table + user table, stored as Parquet.

interactions: user (str), item (str), timestamp (int64, seconds), rating (float32)
items:        item (str) + any text/categorical columns (e.g. title, genres)
users:        user (str) + any columns
impressions:  optional logged impressions (MIND): impression (str), user, item, timestamp,
              label (1 clicked, 0 shown and not clicked, -1 unknown), part (train/dev/test)
synthetic:    optional LLM-generated items of an augmented variant (GENRE NG, see
              `genrecsys.augment`): item, user, title, abstract, category, ... Each one
              belongs to one user's *training* history only; they are never in `items`
              or `interactions`, so no split, sampler or evaluator sees them as items
              (`genrecsys.data.augmented` is how training models read them).

Row order of `interactions` is meaningful: it is the file order, used to break
timestamp ties deterministically (see `splits.py`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genrecsys.errors import GenrecsysError
from genrecsys.files import building_dir

INTERACTION_COLUMNS = ("user", "item", "timestamp", "rating")
SYNTHETIC_FILE = "synthetic_items.parquet"  # an augmented variant's synthetic items (genrecsys.augment.variant)


@dataclass
class Dataset:
    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"item": pd.Series([], dtype=str)}))
    users: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"user": pd.Series([], dtype=str)}))
    impressions: pd.DataFrame | None = None
    synthetic: pd.DataFrame | None = None  # None (and an empty table) = no synthetic items

    def __post_init__(self) -> None:
        self.interactions = normalize_interactions(self.interactions, self.name)
        if "item" not in self.items.columns:
            raise GenrecsysError(f"{self.name}: item table has no 'item' column")
        if "user" not in self.users.columns:
            raise GenrecsysError(f"{self.name}: user table has no 'user' column")
        self.items = self.items.assign(item=self.items["item"].astype(str)).reset_index(drop=True)
        self.users = self.users.assign(user=self.users["user"].astype(str)).reset_index(drop=True)
        if self.impressions is not None:
            self.impressions = normalize_impressions(self.impressions, self.name)

    @property
    def n_users(self) -> int:
        return int(self.interactions["user"].nunique())

    @property
    def n_items(self) -> int:
        return int(self.interactions["item"].nunique())

    def titles(self) -> dict[str, str]:
        if "title" not in self.items.columns:
            return {}
        return dict(zip(self.items["item"], self.items["title"].astype(str)))

    def save(self, directory: str | Path) -> Path:
        """Write three Parquet files + meta.json atomically (a temp dir renamed into place)."""
        target = Path(directory)
        with building_dir(target, replace=True) as tmp:
            self.interactions.to_parquet(tmp / "interactions.parquet", index=False)
            self.items.to_parquet(tmp / "items.parquet", index=False)
            self.users.to_parquet(tmp / "users.parquet", index=False)
            if self.impressions is not None:
                self.impressions.to_parquet(tmp / "impressions.parquet", index=False)
            if self.synthetic is not None and len(self.synthetic):
                self.synthetic.to_parquet(tmp / SYNTHETIC_FILE, index=False)
            (tmp / "meta.json").write_text(json.dumps({"name": self.name}))
        return target

    @classmethod
    def load(cls, directory: str | Path) -> "Dataset":
        d = Path(directory)
        if not (d / "interactions.parquet").is_file():
            raise GenrecsysError(f"{d}: not a genrecsys dataset directory (no interactions.parquet)")
        name = json.loads((d / "meta.json").read_text())["name"] if (d / "meta.json").is_file() else d.name
        return cls(
            name=name,
            interactions=pd.read_parquet(d / "interactions.parquet"),
            items=pd.read_parquet(d / "items.parquet"),
            users=pd.read_parquet(d / "users.parquet"),
            impressions=pd.read_parquet(d / "impressions.parquet") if (d / "impressions.parquet").is_file() else None,
            synthetic=pd.read_parquet(d / SYNTHETIC_FILE) if (d / SYNTHETIC_FILE).is_file() else None,
        )


def _numeric(col: pd.Series) -> pd.Series:
    """Numbers that fit int64 (timestamps) / float32 (ratings); anything else is NaN, so the
    caller reports its row (huge digit strings, inf and NaN included)."""
    try:
        out = pd.to_numeric(col, errors="coerce")
    except (ValueError, OverflowError):  # e.g. a 5,000-digit id: Python's int() refuses it
        out = pd.Series([_one_number(v) for v in col], index=col.index, dtype="float64")
    if out.dtype.kind == "f" or out.dtype == object:
        out = out.astype("float64")
        out = out.where(out.abs() < 2**63)
    return out


def _one_number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def _ids(col: pd.Series) -> pd.Series:
    """User or item ids as strings. A categorical column (a dictionary-encoded Parquet file,
    e.g. ``write_ml_like``'s) stays categorical with string categories: one string per
    distinct id instead of one Python object per row, which is what lets 100M interactions
    load in a few GB."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.cat.remove_unused_categories()
        cats = col.cat.categories.astype(str)
        if cats.has_duplicates:  # e.g. 1 and "1": as strings they are one id
            return col.astype(str)
        # Categories in string order, so codes sort as the strings do: the split numbers
        # users and items exactly as it would for the same ids held as strings.
        col = col.cat.rename_categories(cats)
        return col.cat.reorder_categories(np.sort(cats.to_numpy(dtype=str)))
    return col.astype(str)


def normalize_interactions(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check columns and types; return a frame with exactly the canonical columns."""
    missing = [c for c in ("user", "item") if c not in df.columns]
    if missing:
        raise GenrecsysError(f"{source}: interactions lack column(s) {', '.join(missing)}")
    out = pd.DataFrame({"user": _ids(df["user"]), "item": _ids(df["item"])})
    if "timestamp" in df.columns:
        ts = _numeric(df["timestamp"])
        bad = ts.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise GenrecsysError(
                f"{source}: non-numeric timestamp {df['timestamp'].iloc[row]!r} in interaction row {row + 1}"
            )
        out["timestamp"] = ts.astype("int64").to_numpy()
    else:
        out["timestamp"] = np.zeros(len(df), dtype="int64")
    if "rating" in df.columns:
        r = _numeric(df["rating"])
        if r.isna().any():
            row = int(np.flatnonzero(r.isna().to_numpy())[0])
            raise GenrecsysError(f"{source}: non-numeric rating {df['rating'].iloc[row]!r} in interaction row {row + 1}")
        out["rating"] = r.astype("float32").to_numpy()
    else:
        out["rating"] = np.ones(len(df), dtype="float32")
    return out.reset_index(drop=True)


IMPRESSION_COLUMNS = ("impression", "user", "item", "timestamp", "label", "part")


def normalize_impressions(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check the logged-impression table: one row per shown item, canonical columns and types."""
    missing = [c for c in IMPRESSION_COLUMNS if c not in df.columns]
    if missing:
        raise GenrecsysError(f"{source}: impressions lack column(s) {', '.join(missing)}")
    labels = pd.to_numeric(df["label"], errors="coerce")
    if labels.isna().any() or not labels.isin((-1, 0, 1)).all():
        raise GenrecsysError(f"{source}: impression labels must be 1, 0 or -1 (unknown)")
    return pd.DataFrame({"impression": df["impression"].astype(str), "user": df["user"].astype(str),
                         "item": df["item"].astype(str), "timestamp": pd.to_numeric(df["timestamp"]).astype("int64"),
                         "label": labels.astype("int8"), "part": df["part"].astype(str)}).reset_index(drop=True)
