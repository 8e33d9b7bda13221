"""Loaders for the official distribution formats of MovieLens, Amazon reviews and Yelp.

Each loader returns a canonical `Dataset` (see `schema.py`) with interactions in file
order, and raises `GenrecsysError` naming the file and line (and field) of the first
malformed record. Item tables carry `title` and, where the format has them, `genres`
or `categories` as '|'-joined strings. Amazon and Yelp files may be gzipped (`.gz`).

>>> ds = load_movielens("data/ml-1m")          # doctest: +SKIP
>>> ds.name, ds.n_users                         # doctest: +SKIP
('ml-1m', 6040)
"""
from __future__ import annotations

import ast
import csv
import gzip
import html
import io
import json
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from genrecsys.data.movielens import read_grouplens_100k
from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError

_RATING_COLUMNS = ["user", "item", "rating", "timestamp"]


# --------------------------------------------------------------------------- helpers

def _require(path: Path) -> Path:
    if not path.is_file():
        raise GenrecsysError(f"file not found: {path}")
    return path


def _read_text(path: Path) -> str:
    """Whole file as text; UTF-8, else latin-1 (ML-1M's .dat files are latin-1).

    Split it on "\n" only: str.splitlines() would also break at U+0085 and friends,
    which latin-1 text can contain.
    """
    raw = _require(path).read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) for the non-blank lines of a text file, streamed."""
    _require(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if line:
                yield lineno, line


def _number(value: object, path: Path, lineno: int, field: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise GenrecsysError(f"{path}:{lineno}: field {field!r} is not a number: {str(value)[:40]!r}") from None
    except OverflowError:  # an integer beyond float's range
        number = float("inf")
    if not abs(number) < 2**63:  # NaN, inf, or beyond int64 (a timestamp must fit)
        raise GenrecsysError(f"{path}:{lineno}: field {field!r} is not a finite number within 64 bits: "
                             f"{str(value)[:40]!r}")
    return number


def _json_records(path: Path, fields: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """JSON-lines records that must hold `fields`; errors name file, line and field."""
    for lineno, line in _lines(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise GenrecsysError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        except ValueError as e:  # valid JSON that Python refuses, e.g. an integer of 5,000 digits
            raise GenrecsysError(f"{path}:{lineno}: unreadable JSON ({str(e)[:80]})") from None
        if not isinstance(rec, dict):
            raise GenrecsysError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        missing = [f for f in fields if f not in rec]
        if missing:
            raise GenrecsysError(f"{path}:{lineno}: missing field {missing[0]!r}")
        yield lineno, rec


def _attach(keys: pd.Series, key: str, rows: list[dict]) -> pd.DataFrame:
    """Attribute rows for the ids seen in interactions ("" where a file has no row)."""
    table = pd.DataFrame({key: pd.unique(keys)})
    if not rows:
        return table
    attrs = pd.DataFrame(rows).drop_duplicates(key)  # 2018 Amazon meta repeats some asins
    # Text gaps become "", number gaps stay NaN: a Parquet column holds one type.
    text = {c: "" for c in attrs.columns if not pd.api.types.is_numeric_dtype(attrs[c])}
    return table.merge(attrs, on=key, how="left").fillna(text)


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------- MovieLens

def _scan_ratings(path: Path, sep: str, header: bool) -> pd.DataFrame:
    """Reference parser for a MovieLens ratings file: one line at a time, strict.

    Slow, but it is the one that says which line is wrong; `_read_ratings` calls it
    whenever the fast parser rejects a file.
    """
    rows = []
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip() or (header and lineno == 1):
            continue
        cells = line.strip().split(sep)
        if len(cells) != 4:
            raise GenrecsysError(f"{path}:{lineno}: expected 4 fields (userId{sep}movieId{sep}rating{sep}timestamp), got {len(cells)}")
        for name, cell in zip(("user", "item", "rating", "timestamp"), cells):
            if not cell:
                raise GenrecsysError(f"{path}:{lineno}: field {name!r} is empty")
        _number(cells[2], path, lineno, "rating")
        if not (cells[3].isascii() and cells[3].lstrip("-").isdigit() and len(cells[3]) <= 18):
            raise GenrecsysError(f"{path}:{lineno}: field 'timestamp' is not a 64-bit integer: {cells[3][:40]!r}")
        rows.append(cells)
    return pd.DataFrame(rows, columns=_RATING_COLUMNS).astype({"rating": "float32", "timestamp": "int64"})


def _read_ratings(path: Path, sep: str, header: bool) -> pd.DataFrame:
    """`_parse_ratings`, refusing a file without ratings (naming it)."""
    frame = _parse_ratings(path, sep, header)
    if frame.empty:
        raise GenrecsysError(f"{path}: no ratings (empty file)")
    return frame


def _parse_ratings(path: Path, sep: str, header: bool) -> pd.DataFrame:
    """Ratings via pandas' C parser (ML-32M has 32M lines); on any doubt, the strict scan.

    The C parser takes one-character separators only, so `::` is read as `:` with an
    empty field between every pair of values; those gap fields must indeed be empty.
    Letting pandas infer types is ~2x faster than asking for string ids; MovieLens ids
    are integers, so anything else is a doubt and goes to the scan.
    """
    _require(path)
    step = len(sep)
    names = [f"c{i}" for i in range(3 * step + 1)]
    user, item, rating, ts = names[::step]
    try:
        raw = pd.read_csv(path, sep=sep[0], header=0 if header else None, names=names, engine="c", low_memory=False)
        kinds = [raw[c].dtype.kind for c in (user, item, rating, ts)]
        gaps = [c for c in names if c not in (user, item, rating, ts)]
        clean = (kinds[0] == kinds[1] == kinds[3] == "i" and kinds[2] in "if" and not raw[rating].isna().any()
                 and all(raw[c].isna().all() for c in gaps))
        if clean:
            return pd.DataFrame({"user": raw[user].astype(str), "item": raw[item].astype(str),
                                 "rating": raw[rating].astype("float32"), "timestamp": raw[ts].astype("int64")})
    except (ValueError, OverflowError, pd.errors.ParserError):  # extra fields, bad bytes, odd digits: any doubt
        pass
    return _scan_ratings(path, sep, header)  # strict: raises, naming the offending line


def _split_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """'Toy Story (1995)' -> ('Toy Story', '1995'), as the ML-100K loader does."""
    titles = titles.str.strip()
    years = titles.str.extract(r"\((\d{4})\)$")[0].fillna("")
    return titles.str.replace(r"\s*\(\d{4}\)$", "", regex=True), years


def _movie_table(ids: list[str], titles: list[str], genres: list[str]) -> pd.DataFrame:
    title, year = _split_year(pd.Series(titles, dtype=str))
    # 20M+ mark missing genres with a placeholder; an empty string is what others use.
    genres = ["" if g == "(no genres listed)" else g for g in genres]
    return pd.DataFrame({"item": ids, "title": title, "year": year, "genres": genres})


def _read_dat(path: Path, names: list[str]) -> pd.DataFrame:
    rows = []
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        cells = line.rstrip("\r").split("::")
        if len(cells) != len(names):
            raise GenrecsysError(f"{path}:{lineno}: expected {len(names)} fields ({'::'.join(names)}), got {len(cells)}")
        rows.append(cells)
    if not rows:
        raise GenrecsysError(f"{path}: no rows (empty file; expected {'::'.join(names)} lines)")
    return pd.DataFrame(rows, columns=names, dtype=str)


def read_movielens_dat(directory: str | Path, name: str | None = None) -> Dataset:
    """ML-1M / ML-10M: `ratings.dat`, `movies.dat`, and `users.dat` (1M only)."""
    d = Path(directory)
    has_users = (d / "users.dat").is_file()
    name = name or ("ml-1m" if has_users else "ml-10m")
    inter = _read_ratings(d / "ratings.dat", "::", header=False)
    items = pd.DataFrame({"item": pd.unique(inter["item"])})
    if (d / "movies.dat").is_file():
        movies = _read_dat(d / "movies.dat", ["MovieID", "Title", "Genres"])
        items = _movie_table(list(movies["MovieID"]), list(movies["Title"]), list(movies["Genres"]))
    users = pd.DataFrame({"user": pd.unique(inter["user"])})
    if has_users:
        users = _read_dat(d / "users.dat", ["UserID", "Gender", "Age", "Occupation", "Zip-code"])
        users.columns = ["user", "gender", "age", "occupation", "zip_code"]
    return Dataset(name, inter, items, users)


def read_movielens_csv(directory: str | Path, name: str | None = None) -> Dataset:
    """ML-20M / 25M / 32M (and ml-latest): `ratings.csv` and `movies.csv`, with headers."""
    d = Path(directory)
    name = name or (d.name.lower() if d.name.lower().startswith("ml-") else "movielens")
    inter = _read_ratings(d / "ratings.csv", ",", header=True)
    items = pd.DataFrame({"item": pd.unique(inter["item"])})
    movies = d / "movies.csv"
    if movies.is_file():
        rows = []
        # csv, not split(","): titles such as "American President, The (1995)" are quoted.
        reader = csv.reader(io.StringIO(_read_text(movies), newline=""))
        for row in reader:
            if reader.line_num == 1 or not row:
                continue
            if len(row) != 3:
                raise GenrecsysError(f"{movies}:{reader.line_num}: expected 3 fields (movieId,title,genres), got {len(row)}")
            rows.append(row)
        ids, titles, genres = zip(*rows) if rows else ((), (), ())
        items = _movie_table(list(ids), list(titles), list(genres))
    return Dataset(name, inter, items, pd.DataFrame({"user": pd.unique(inter["user"])}))


def load_movielens(path: str | Path) -> Dataset:
    """Any MovieLens release, detected from its files: a directory or the official .zip.

    `u.data` -> 100K, `ratings.dat` + `users.dat` -> 1M, `ratings.dat` alone -> 10M,
    `ratings.csv` -> 20M / 25M / 32M / latest.
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".zip":
        with tempfile.TemporaryDirectory() as tmp:
            with zipfile.ZipFile(p) as zf:
                zf.extractall(tmp)
            inner = next((f.parent for f in sorted(Path(tmp).rglob("*")) if f.name in ("u.data", "ratings.dat", "ratings.csv")), None)
            if inner is None:
                raise GenrecsysError(f"{p}: archive holds no u.data, ratings.dat or ratings.csv")
            try:
                return load_movielens(inner)
            except GenrecsysError as e:  # name the member of the archive, not a vanished temp file
                raise GenrecsysError(str(e).replace(tmp, str(p))) from None
    if p.is_file():
        raise GenrecsysError(f"{p}: is a file; give the MovieLens directory (or its official .zip)")
    if not p.is_dir():
        raise GenrecsysError(f"MovieLens path not found: {p}")
    if (p / "u.data").is_file():
        return read_grouplens_100k(p)
    if (p / "ratings.dat").is_file():
        return read_movielens_dat(p)
    if (p / "ratings.csv").is_file():
        return read_movielens_csv(p)
    raise GenrecsysError(f"{p}: not a MovieLens directory (expected u.data, ratings.dat or ratings.csv)")


# --------------------------------------------------------------------------- Amazon

def _meta_record(line: str, path: Path, lineno: int) -> dict:
    """2018 metadata is JSON; 2014 metadata is Python dict literals (single quotes)."""
    try:
        rec = json.loads(line)
    except ValueError:  # JSONDecodeError, or an integer too long for Python
        try:
            rec = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            raise GenrecsysError(f"{path}:{lineno}: neither JSON nor a Python dict literal") from None
    if not isinstance(rec, dict) or "asin" not in rec:
        raise GenrecsysError(f"{path}:{lineno}: missing field 'asin'")
    return rec


def _categories(rec: dict) -> str:
    """2014 `categories` is a list of category paths; 2018 `category` is one path."""
    paths = rec.get("categories") or [rec.get("category") or []]
    seen: dict[str, None] = {}
    for cat_path in paths:
        for cat in cat_path if isinstance(cat_path, list) else [cat_path]:
            seen.setdefault(str(cat).strip(), None)
    return "|".join(c for c in seen if c)


def load_amazon(reviews_path: str | Path, meta_path: str | Path | None = None, name: str | None = None) -> Dataset:
    """Amazon reviews (2014 or 2018 release, e.g. `reviews_Beauty_5.json.gz`) + metadata.

    Reviews are JSON lines with reviewerID, asin, overall, unixReviewTime. The item
    table covers the reviewed items, with title, categories and brand from the metadata
    ("" where an item has none).
    """
    rpath = Path(reviews_path)
    users, items, ratings, times = [], [], [], []
    for lineno, rec in _json_records(rpath, ("reviewerID", "asin", "overall", "unixReviewTime")):
        users.append(rec["reviewerID"])
        items.append(rec["asin"])
        ratings.append(_number(rec["overall"], rpath, lineno, "overall"))
        t = _number(rec["unixReviewTime"], rpath, lineno, "unixReviewTime")
        times.append(int(t))
    if not users:
        raise GenrecsysError(f"{rpath}: no reviews (empty file)")
    inter = pd.DataFrame({"user": users, "item": items, "timestamp": np.asarray(times, dtype=np.int64), "rating": ratings})
    rows = []
    if meta_path is not None:
        mpath, wanted = Path(meta_path), set(items)
        for lineno, line in _lines(mpath):
            rec = _meta_record(line, mpath, lineno)
            if rec["asin"] in wanted:  # meta files cover whole categories; keep what was reviewed
                # 2018 metadata is scraped HTML text: "Tom &amp; Jerry" is "Tom & Jerry"
                rows.append({"item": rec["asin"], "title": html.unescape(str(rec.get("title") or "")).strip(),
                             "categories": html.unescape(_categories(rec)),
                             "brand": html.unescape(str(rec.get("brand") or "")).strip()})
    table = _attach(inter["item"], "item", rows)
    if name is None:
        name = rpath.name.split(".")[0].removeprefix("reviews_").removesuffix("_5")
    return Dataset(name, inter, table, pd.DataFrame({"user": pd.unique(inter["user"])}))


# --------------------------------------------------------------------------- Yelp

def _unix_seconds(value: object, path: Path, lineno: int) -> int:
    """Yelp dates are 'YYYY-MM-DD HH:MM:SS' (older releases: 'YYYY-MM-DD'), read as UTC."""
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        raise GenrecsysError(f"{path}:{lineno}: field 'date' is not 'YYYY-MM-DD HH:MM:SS': {value!r}") from None
    return int(dt.replace(tzinfo=timezone.utc).timestamp())


def load_yelp(directory: str | Path, name: str = "yelp") -> Dataset:
    """Yelp Open Dataset (academic JSON): review file, plus business and user files if present.

    Items are businesses (title = name, categories '|'-joined); users get name,
    review_count, yelping_since and average_stars where the user file has them.
    """
    d = Path(directory)
    rpath = _find(d, "yelp_academic_dataset_review.json")
    if rpath is None:
        raise GenrecsysError(f"{d}: no yelp_academic_dataset_review.json")
    users, items, ratings, times = [], [], [], []
    for lineno, rec in _json_records(rpath, ("user_id", "business_id", "stars", "date")):
        users.append(rec["user_id"])
        items.append(rec["business_id"])
        ratings.append(_number(rec["stars"], rpath, lineno, "stars"))
        times.append(_unix_seconds(rec["date"], rpath, lineno))
    if not users:
        raise GenrecsysError(f"{rpath}: no reviews (empty file)")
    inter = pd.DataFrame({"user": users, "item": items, "timestamp": np.asarray(times, dtype=np.int64), "rating": ratings})

    rows = []
    bpath = _find(d, "yelp_academic_dataset_business.json")
    if bpath is not None:
        for _, r in _json_records(bpath, ("business_id",)):
            cats = (c.strip() for c in (r.get("categories") or "").split(","))
            rows.append({"item": r["business_id"], "title": html.unescape(str(r.get("name") or "")),
                         "categories": "|".join(html.unescape(c) for c in cats if c)})
    table = _attach(inter["item"], "item", rows)

    rows = []
    upath = _find(d, "yelp_academic_dataset_user.json")
    if upath is not None:
        keep = ("name", "review_count", "yelping_since", "average_stars")
        rows = [{"user": r["user_id"], **{k: r[k] for k in keep if k in r}} for _, r in _json_records(upath, ("user_id",))]
    return Dataset(name, inter, table, _attach(inter["user"], "user", rows))
