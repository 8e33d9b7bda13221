"""MIND (Microsoft News Dataset) in its official TSV format.

``news.tsv``: 8 tab-separated columns — news id, category, subcategory, title, abstract,
URL, title entities, abstract entities. ``behaviors.tsv``: 5 columns — impression id,
user id, time (``11/15/2019 8:55:22 AM``), history (space-separated news ids, clicks
before the log period) and impressions (``N123-1 N456-0``: shown news, 1 = clicked;
the unlabelled MIND-large test set writes bare ids, read as label -1 = unknown).

A directory holds either the two files (one part, ``train``) or one sub-directory per
part (``train``, ``dev``, ``test``, or the official ``MINDsmall_train`` ... names).
The result is a canonical `Dataset`:

- interactions: each user's history-column news (ordered union over their rows, stamped
  one second before their first impression, so they come first) then every click of
  every labelled impression, at the impression's time;
- items: ``item, category, subcategory, title, abstract, url``;
- users: ``user, history_length`` (news in the history column, the "reading history" of
  GENRE's new-user definition: fewer than 5 = new);
- impressions: one row per shown news (``impression, user, timestamp, item, label, part``).

>>> ds = load_mind("MINDsmall")            # doctest: +SKIP
>>> print(format_mind_stats(mind_stats(ds)))   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError

NEWS_COLUMNS = ("item", "category", "subcategory", "title", "abstract", "url", "title_entities", "abstract_entities")
BEHAVIOR_COLUMNS = ("impression", "user", "time", "history", "impressions")
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
PARTS = ("train", "dev", "test")


def _lines(path: Path, n_fields: int):
    try:
        yield from _split_lines(path, n_fields)
    except UnicodeDecodeError as exc:
        raise GenrecsysError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _split_lines(path: Path, n_fields: int):
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cells = line.split("\t")
            if len(cells) != n_fields:
                raise GenrecsysError(f"{path}:{lineno}: expected {n_fields} tab-separated fields, got {len(cells)}")
            yield lineno, cells


def read_news(path: str | Path) -> pd.DataFrame:
    """news.tsv -> item, category, subcategory, title, abstract, url (entities dropped)."""
    p = Path(path)
    rows = [cells[:6] for _, cells in _lines(p, len(NEWS_COLUMNS))]
    if not rows:
        raise GenrecsysError(f"{p}: no news rows (empty file)")
    return pd.DataFrame(rows, columns=list(NEWS_COLUMNS[:6]), dtype=str)


def read_behaviors(path: str | Path) -> pd.DataFrame:
    """behaviors.tsv -> impression, user, timestamp (int seconds), history (list), shown (list), labels (list)."""
    p = Path(path)
    ids, users, times, histories, shown, labels = [], [], [], [], [], []
    for lineno, cells in _lines(p, len(BEHAVIOR_COLUMNS)):
        imp_id, user, when, history, impressions = cells
        items, labs = [], []
        for token in impressions.split():
            news, sep, label = token.rpartition("-")
            if not sep:  # unlabelled (MIND-large test)
                news, label = token, "-1"
            if not news or label not in ("0", "1", "-1"):
                raise GenrecsysError(f"{p}:{lineno}: bad impression entry {token!r} (expected NEWSID-0 or NEWSID-1)")
            items.append(news)
            labs.append(int(label))
        ids.append(imp_id)
        users.append(user)
        times.append(when)
        histories.append(history.split())
        shown.append(items)
        labels.append(labs)
    if not ids:
        raise GenrecsysError(f"{p}: no behavior rows (empty file)")
    stamps = pd.to_datetime(pd.Series(times, dtype=str), format=TIME_FORMAT, errors="coerce")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise GenrecsysError(f"{p}: bad time {times[row]!r} in behavior row {row + 1} (expected e.g. 11/15/2019 8:55:22 AM)")
    seconds = (stamps - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    return pd.DataFrame({"impression": ids, "user": users, "timestamp": seconds.astype("int64"),
                         "history": histories, "shown": shown, "labels": labels})


def find_parts(directory: str | Path) -> dict[str, Path]:
    """part name -> directory holding news.tsv and behaviors.tsv."""
    d = Path(directory)
    if (d / "behaviors.tsv").is_file():
        return {"train": d}
    parts: dict[str, Path] = {}
    for sub in sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []:
        if not (sub / "behaviors.tsv").is_file():
            continue
        name = sub.name.lower()
        part = next((x for x in PARTS if name == x or name.endswith(f"_{x}")), None)
        if part is None and name.endswith(("valid", "_val")):
            part = "dev"
        if part is None:
            raise GenrecsysError(f"{sub}: cannot tell which MIND part this is (name it train, dev or test)")
        if part in parts:
            raise GenrecsysError(f"{d}: two directories for the MIND {part} part: {parts[part].name}, {sub.name}")
        parts[part] = sub
    if not parts:
        raise GenrecsysError(f"{d}: no behaviors.tsv (expected MIND files, or train/ dev/ test/ sub-directories holding them)")
    return parts


def load_mind(directory: str | Path, name: str = "mind") -> Dataset:
    """Read a MIND directory (see the module docstring) into a `Dataset` with impressions."""
    parts = find_parts(directory)
    news, behaviors = [], []
    for part, d in parts.items():
        if not (d / "news.tsv").is_file():
            raise GenrecsysError(f"{d}: behaviors.tsv without news.tsv")
        news.append(read_news(d / "news.tsv"))
        b = read_behaviors(d / "behaviors.tsv")
        b["part"] = part
        behaviors.append(b)
    items = pd.concat(news, ignore_index=True).drop_duplicates("item", keep="first").reset_index(drop=True)
    beh = pd.concat(behaviors, ignore_index=True)
    beh = beh.iloc[np.lexsort((np.arange(len(beh)), beh["timestamp"].to_numpy()))].reset_index(drop=True)
    known = set(items["item"])
    unknown = {n for lst in beh["shown"] for n in lst} - known
    if unknown:
        raise GenrecsysError(f"{directory}: impressions show news missing from news.tsv, e.g. {sorted(unknown)[0]!r}")

    # History column: ordered union per user, stamped before the user's first impression.
    first_time = beh.groupby("user", sort=False)["timestamp"].min()
    hist_users, hist_items, hist_len = [], [], {}
    seen: dict[str, set] = {}
    for user, history in zip(beh["user"], beh["history"]):
        s = seen.setdefault(user, set())
        for n in history:
            if n not in s:
                s.add(n)
                hist_users.append(user)
                hist_items.append(n)
        hist_len[user] = len(s)
    hist = pd.DataFrame({"user": hist_users, "item": hist_items})
    hist["timestamp"] = first_time.reindex(hist["user"]).to_numpy() - 1

    lengths = beh["shown"].map(len).to_numpy()
    imp = pd.DataFrame({
        "impression": np.repeat((beh["part"] + "/" + beh["impression"]).to_numpy(), lengths),
        "user": np.repeat(beh["user"].to_numpy(), lengths),
        "timestamp": np.repeat(beh["timestamp"].to_numpy(), lengths),
        "item": np.concatenate([np.asarray(x, dtype=object) for x in beh["shown"]]) if len(beh) else [],
        "label": np.concatenate([np.asarray(x, dtype=np.int8) for x in beh["labels"]]) if len(beh) else [],
        "part": np.repeat(beh["part"].to_numpy(), lengths),
    })
    clicks = imp.loc[imp["label"] == 1, ["user", "item", "timestamp"]]
    inter = pd.concat([hist, clicks], ignore_index=True)
    users = pd.DataFrame({"user": list(first_time.index)})
    users["history_length"] = users["user"].map(hist_len).fillna(0).astype("int64")
    return Dataset(name, inter, items, users, impressions=imp)


def mind_stats(ds: Dataset, tokenizer=None) -> dict:
    """GENRE Table 1 statistics of a MIND-format dataset.

    New users have fewer than 5 news in their history column (GENRE §3.4 footnote 3).
    Tokens per title/abstract are WordPiece tokens (no special tokens) averaged over all
    news, an empty abstract counting 0; they need `tokenizer` (a Hugging Face tokenizer)
    and are left out without one.
    """
    if ds.impressions is None:
        raise GenrecsysError(f"{ds.name}: no impressions (not a MIND-format dataset)")
    h = ds.users["history_length"].to_numpy() if "history_length" in ds.users.columns else np.zeros(len(ds.users))
    new = h < 5
    labels = ds.impressions["label"].to_numpy()
    out = {
        "news": len(ds.items),
        "users": len(ds.users),
        "new_users": int(new.sum()),
        "new_user_ratio": float(new.mean()) if len(new) else 0.0,
        "impressions": int(ds.impressions["impression"].nunique()),
        "positives": int((labels == 1).sum()),
        "negatives": int((labels == 0).sum()),
        "categories": int(ds.items["category"].nunique()) if "category" in ds.items.columns else 0,
        "subcategories": int(ds.items["subcategory"].nunique()) if "subcategory" in ds.items.columns else 0,
        "news_per_user": float(h.mean()) if len(h) else 0.0,
        "news_per_new_user": float(h[new].mean()) if new.any() else 0.0,
    }
    if tokenizer is not None:
        for col in ("title", "abstract"):
            texts = ds.items[col].fillna("").astype(str).tolist() if col in ds.items.columns else []
            ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
            out[f"tokens_per_{col}"] = float(np.mean([len(x) for x in ids])) if ids else 0.0
    return out


_LABELS = {
    "news": ("#news", "{:,}"), "users": ("#users", "{:,}"), "new_users": ("#new user", "{:,}"),
    "new_user_ratio": ("#new user ratio", "{:.2f}"), "impressions": ("#impressions", "{:,}"),
    "positives": ("#pos", "{:,}"), "negatives": ("#neg", "{:,}"), "categories": ("#category", "{:,}"),
    "subcategories": ("#subcategory", "{:,}"), "tokens_per_title": ("tokens per title", "{:.2f}"),
    "tokens_per_abstract": ("tokens per abstract", "{:.2f}"), "news_per_user": ("news per user", "{:.2f}"),
    "news_per_new_user": ("news per new user", "{:.2f}"),
}


def format_mind_stats(stats: dict) -> str:
    """Markdown table in the order of GENRE Table 1; ends with a newline."""
    lines = ["| statistic | value |", "|---|---:|"]
    for key, (label, fmt) in _LABELS.items():
        if key in stats:
            lines.append(f"| {label} | {fmt.format(stats[key])} |")
    return "\n".join(lines) + "\n"
