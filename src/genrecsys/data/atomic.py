"""RecBole atomic files (`.inter`, `.item`, `.user`): tab-separated, typed headers.

A header cell reads `name:type` with type in token, token_seq, float, float_seq.

Field names follow RecBole's conventions and map onto the canonical columns by one rule
(`ITEM_FIELDS`, the first present name wins): `user_id`/`item_id` -> user/item;
item titles from `title`, `movie_title`, `name`, `item_name`, `book_title`; categories from
`genres`, `genre`, `class`, `categories`, `category` (a `token_seq` field's space-separated
tokens become "A|B", the canonical separator); the year from `year` or `release_year`.
Other fields keep their names.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError

# RecBole's conventional field names -> canonical columns.
_RENAME = {"user_id": "user", "item_id": "item", "timestamp": "timestamp", "rating": "rating"}
# canonical item column -> RecBole field names that hold it, in order of preference
ITEM_FIELDS = {"title": ("title", "movie_title", "name", "item_name", "book_title"),
               "genres": ("genres", "genre", "class", "categories", "category"),
               "year": ("year", "release_year")}


def canonical_items(items: pd.DataFrame) -> pd.DataFrame:
    """Rename an `.item` table's fields by `ITEM_FIELDS`; token_seq categories -> "A|B"."""
    types = items.attrs.get("types", {})
    items = items.rename(columns={"item_id": "item"})
    for column, names in ITEM_FIELDS.items():
        if column in items.columns:
            source = column
        else:
            source = next((n for n in names if n in items.columns), None)
            if source is None:
                continue
            items = items.rename(columns={source: column})
        if column == "genres" and types.get(source) == "token_seq":
            items[column] = items[column].str.split().str.join("|")
    items.attrs = {}  # the field types were needed here only; attrs would ride along into every copy
    return items


def _is_number(cell: str) -> bool:
    try:
        return abs(float(cell)) < 2**63  # a timestamp or rating must fit int64 later
    except (ValueError, OverflowError):
        return False


def read_atomic_file(path: str | Path, empty_floats: bool = True) -> pd.DataFrame:
    """Read one atomic file; columns lose their `:type` suffix. Errors name the file and line.
    ``empty_floats=False``: an empty float cell is an error (interactions' timestamps and
    ratings; item and user tables may leave a float blank)."""
    p = Path(path)
    if not p.is_file():
        raise GenrecsysError(f"file not found: {p}")
    try:
        return _scan_atomic(p, empty_floats)
    except UnicodeDecodeError as exc:
        raise GenrecsysError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:  # e.g. a field over csv's size limit
        raise GenrecsysError(f"{p}: unreadable ({exc})") from None


def _scan_atomic(p: Path, empty_floats: bool) -> pd.DataFrame:
    with p.open(encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        names, types = [], {}
        for cell in header:
            name, sep, kind = cell.partition(":")
            if not sep or kind not in ("token", "token_seq", "float", "float_seq"):
                raise GenrecsysError(f"{p}:1: header cell {cell!r} is not name:token|token_seq|float|float_seq")
            names.append(name)
            types[name] = kind
        rows = []
        for lineno, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=2):
            if not row or row == [""]:
                continue
            if len(row) != len(names):
                raise GenrecsysError(f"{p}:{lineno}: expected {len(names)} fields, got {len(row)}")
            for name, cell in zip(names, row):
                if types[name] == "float" and (cell.strip() or not empty_floats) and not _is_number(cell):
                    raise GenrecsysError(f"{p}:{lineno}: field {name!r} is not a number: {cell[:40]!r}")
            rows.append(row)
    frame = pd.DataFrame(rows, columns=names, dtype=str)
    frame.attrs["types"] = types
    return frame


def load_atomic(directory: str | Path, name: str | None = None) -> Dataset:
    """Load `<name>.inter` (+ optional `.item`, `.user`) from a RecBole dataset directory."""
    d = Path(directory)
    name = name or d.name
    inter_path = d / f"{name}.inter"
    if not inter_path.is_file():
        raise GenrecsysError(f"{d}: no {name}.inter file")
    inter = read_atomic_file(inter_path, empty_floats=False).rename(columns=_RENAME)
    for col in ("user", "item"):
        if col not in inter.columns:
            raise GenrecsysError(f"{inter_path}: no {col}_id column (columns: {', '.join(inter.columns)})")
    if inter.empty:
        raise GenrecsysError(f"{inter_path}: no interactions (a header and no rows)")
    items = pd.DataFrame({"item": sorted(inter["item"].unique())})
    if (d / f"{name}.item").is_file():
        items = canonical_items(read_atomic_file(d / f"{name}.item"))
        if "item" not in items.columns:
            raise GenrecsysError(f"{d / f'{name}.item'}: no item_id column (columns: {', '.join(items.columns)})")
    users = pd.DataFrame({"user": sorted(inter["user"].unique())})
    if (d / f"{name}.user").is_file():
        users = read_atomic_file(d / f"{name}.user").rename(columns={"user_id": "user"})
        if "user" not in users.columns:
            raise GenrecsysError(f"{d / f'{name}.user'}: no user_id column (columns: {', '.join(users.columns)})")
    for frame in (inter, users):
        frame.attrs = {}
    return Dataset(name=name, interactions=inter, items=items, users=users)
