"""RecBole atomic files (`.inter`, `.item`, `.user`): tab-separated, typed headers.

A header cell reads `name:type` with type in token, token_seq, float, float_seq.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError

# RecBole's conventional field names -> canonical columns.
_RENAME = {"user_id": "user", "item_id": "item", "timestamp": "timestamp", "rating": "rating"}


def read_atomic_file(path: str | Path) -> pd.DataFrame:
    """Read one atomic file; columns lose their `:type` suffix. Errors name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise GenrecsysError(f"file not found: {p}")
    with p.open(encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        names = []
        for cell in header:
            name, sep, kind = cell.partition(":")
            if not sep or kind not in ("token", "token_seq", "float", "float_seq"):
                raise GenrecsysError(f"{p}:1: header cell {cell!r} is not name:token|token_seq|float|float_seq")
            names.append(name)
        rows = []
        for lineno, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=2):
            if not row or row == [""]:
                continue
            if len(row) != len(names):
                raise GenrecsysError(f"{p}:{lineno}: expected {len(names)} fields, got {len(row)}")
            rows.append(row)
    return pd.DataFrame(rows, columns=names, dtype=str)


def load_atomic(directory: str | Path, name: str | None = None) -> Dataset:
    """Load `<name>.inter` (+ optional `.item`, `.user`) from a RecBole dataset directory."""
    d = Path(directory)
    name = name or d.name
    inter_path = d / f"{name}.inter"
    if not inter_path.is_file():
        raise GenrecsysError(f"{d}: no {name}.inter file")
    inter = read_atomic_file(inter_path).rename(columns=_RENAME)
    for col in ("user", "item"):
        if col not in inter.columns:
            raise GenrecsysError(f"{inter_path}: no {col}_id column (columns: {', '.join(inter.columns)})")
    items = pd.DataFrame({"item": sorted(inter["item"].unique())})
    if (d / f"{name}.item").is_file():
        items = read_atomic_file(d / f"{name}.item").rename(columns={"item_id": "item"})
    users = pd.DataFrame({"user": sorted(inter["user"].unique())})
    if (d / f"{name}.user").is_file():
        users = read_atomic_file(d / f"{name}.user").rename(columns={"user_id": "user"})
    return Dataset(name=name, interactions=inter, items=items, users=users)
