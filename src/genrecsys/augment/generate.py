"""GENRE §3.4, the LLM as personalized item generator: for each new user (1-4 history
items), ``n_items`` synthetic items {title, abstract, category} that extend the user's
*training* history. With ``interests`` (a profile per user) it is the chain generator
(§3.5, profiler -> generator).

Synthetic items are kept apart from the real data, by construction:

- they live in the variant's ``synthetic_items.parquet`` (ids ``syn-r<round>-<user>-<k>``),
  never in ``items.parquet`` or ``interactions.parquet``, so no split, negative sampler or
  evaluator can make them candidates or targets, and the real catalogue is unchanged;
- the user table's ``synthetic_history`` lists each user's synthetic ids in order.

How downstream training consumes them (:func:`history_with_synthetic` states the rule;
``genrecsys.data.augmented``, ``data.itemtext`` and ``data.sessions`` implement it for the
news / CTR models): a news model's user encoder reads ``synthetic ids + real training
history`` (synthetic first, so the real clicks stay the most recent and inside
``max_history``); the news encoder encodes the synthetic rows from their own
title/abstract/category; they never enter the candidate set, the negatives or the
targets. ID-based models (Pop, SASRec, ...) ignore them.

Items are generated one per prompt, as in GENRE; item k's prompt lists the items already
invented for that user, so the greedy answers differ. An answer without a title is a
parse failure (re-asked once, then that item is simply not added); a category outside the
catalogue's categories is left empty and counted, never guessed.

>>> parse_item('Here: {"title": "Rates rise again", "abstract": "The Fed acts.", "category": "Finance"}',
...            ["finance", "sports"])
{'title': 'Rates rise again', 'abstract': 'The Fed acts.', 'category': 'finance'}
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from genrecsys.augment.inputs import category_vocabulary, item_categories, new_users, user_histories
from genrecsys.augment.variant import SYNTHETIC_COLUMNS, Step, Variant
from genrecsys.llm.accounting import JobStats
from genrecsys.llm.job import keep_recent
from genrecsys.llm.parse import ParseError, check_title, extract_json, match_vocabulary
from genrecsys.llm.types import SamplingParams

_KEYS = {"title": ("title", "headline", "name of the item"), "abstract": ("abstract", "description", "summary"),
         "category": ("category", "genre")}
_LINE = re.compile(r"^\s*(?:\*\*)?\"?(title|headline|abstract|description|summary|category|genre)\"?(?:\*\*)?\s*:\s*(.+?)\s*,?$",
                   re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class GenerateConfig:
    template: str = "generate_item"
    n_items: int = 2  # synthetic items per user (GENRE: 2 in the ALL setting)
    min_history: int = 1  # new users: this many ...
    max_history: int = 4  # ... to this many history items
    history_cap: int = 30
    holdout_last: int = 2  # see genrecsys.augment.inputs
    max_tokens: int = 160
    limit: int | None = None  # only the first N users
    users: tuple[str, ...] | None = None  # these users instead of the new users


def _get(obj: Mapping[str, Any], field: str) -> str:
    lowered = {str(k).casefold(): v for k, v in obj.items()}
    for key in _KEYS[field]:
        v = lowered.get(key)
        if isinstance(v, list):
            v = ", ".join(str(x) for x in v)
        if v is not None and str(v).strip():
            return " ".join(str(v).split())
    return ""


def parse_item(text: str, categories: Sequence[str]) -> dict[str, str]:
    """A synthetic item in an answer: a JSON object, else "Title: ... / Abstract: ... /
    Category: ..." lines. ``category`` is matched to ``categories`` ('' when it is not one)."""
    try:
        obj: Mapping[str, Any] = extract_json(text)
    except ParseError as exc:
        if exc.truncated:
            raise
        obj = {}
        for m in _LINE.finditer(text):
            obj.setdefault(m.group(1).casefold(), m.group(2).strip().strip('"'))
        if not obj:
            raise ParseError(f"{exc}; and no 'Title:' line either") from None
    title = _get(obj, "title")
    if not title:
        raise ParseError("the item has no title")
    title = check_title(title)
    raw_cat = _get(obj, "category")
    matched, _ = match_vocabulary([raw_cat], categories) if raw_cat else ([], [])
    return {"title": title, "abstract": _get(obj, "abstract"), "category": matched[0] if matched else ""}


def _line(title: str, cats: Sequence[str]) -> str:
    return f"({', '.join(cats)}) {title}" if cats else title


def generate_items(source: Variant, llm, cfg: GenerateConfig | None = None,
                   interests: Mapping[str, Sequence[str]] | None = None, task: str = "generate", *,
                   histories: Mapping[str, Sequence[str]] | None = None) -> Step:
    """Synthetic items for new users (or ``cfg.users``). With ``interests``, only users that
    have some are served and their topics go into the prompt (the chain generator).

    ``histories`` (user -> real item ids, most recent first) replaces the histories read
    from the dataset, and its users are the ones served (unless ``cfg.users`` is set): pass
    the truncated training histories of simulated cold-start users
    (:func:`genrecsys.data.coldstart.simulate_cold_start`) so the prompts see exactly what
    those users' models will see.
    """
    cfg = cfg or GenerateConfig()
    ds = source.dataset
    if histories is not None:
        histories = {str(u): list(h)[:cfg.history_cap] for u, h in histories.items()}
        users = list(cfg.users) if cfg.users is not None else sorted(histories)
    else:
        histories = user_histories(ds, cap=cfg.history_cap, holdout_last=cfg.holdout_last)
        users = list(cfg.users) if cfg.users is not None else new_users(ds, histories, cfg.min_history, cfg.max_history)
    users = [u for u in users if histories.get(u)]
    if interests is not None:
        users = [u for u in users if interests.get(u)]
    if cfg.limit is not None:
        users = users[:cfg.limit]
    titles, cats = ds.titles(), item_categories(ds)
    categories = category_vocabulary(ds)
    template = llm.template(cfg.template)
    stats = JobStats(backend=llm.backend.name, model=llm.backend.model_id)
    round_no = source.round + 1
    taken = set(ds.items["item"].astype(str)) | set(source.synthetic["item"].astype(str))
    made: dict[str, list[dict[str, str]]] = {u: [] for u in users}
    artefacts: list[dict[str, Any]] = []
    failures = 0
    for k in range(1, cfg.n_items + 1):
        rows = []
        for u in users:
            row: dict[str, Any] = {"history": [_line(titles.get(i, i), cats.get(i, [])) for i in histories[u]],
                                   "categories": categories,
                                   "invented": [_line(m["title"], [m["category"]] if m["category"] else [])
                                                for m in made[u]]}
            if interests is not None:
                row["interests"] = list(interests[u])
            rows.append(row)
        comps = llm.run_template(template, rows, params=SamplingParams(max_tokens=cfg.max_tokens),
                                 parser=lambda text: parse_item(text, categories),
                                 truncate=keep_recent("history"), task=task)
        stats.merge(llm.last_stats)
        # an answered category outside the closed list is parsed to "" (the item keeps no category)
        stats.count(task, out_of_vocabulary=sum(1 for c in comps if c.ok and not c.parsed["category"]))
        for u, c in zip(users, comps):
            item_id = f"syn-r{round_no}-{u}-{k}"
            if c.ok:
                if item_id in taken:  # an id scheme collision would mix a synthetic item into the catalogue
                    raise ValueError(f"synthetic id {item_id!r} already exists")
                made[u].append({"item": item_id, **c.parsed})
            failures += bool(c.error and c.error.startswith("parse:"))
            artefacts.append({"id": u, "k": k, "item": item_id if c.ok else None, "text": c.text,
                              "parsed": c.parsed if c.ok else None, "error": c.error, "cached": c.cached})
    new_rows = [{**m, "user": u, "round": round_no, "task": task} for u in users for m in made[u]]
    synthetic = pd.concat([source.synthetic, pd.DataFrame(new_rows, columns=list(SYNTHETIC_COLUMNS))],
                          ignore_index=True) if new_rows else source.synthetic
    synthetic = synthetic.astype({"round": "int64"})
    return Step(task=task, template=template.name, template_version=template.version, dataset=ds,
                synthetic=synthetic, stats=stats, rows=len(users) * cfg.n_items, parse_failures=failures,
                quality=synthetic_quality(pd.DataFrame(new_rows, columns=list(SYNTHETIC_COLUMNS)), ds.titles().values(),
                                          users=len(users)),
                settings={"n_items": cfg.n_items, "min_history": cfg.min_history, "max_history": cfg.max_history,
                          "history_cap": cfg.history_cap, "holdout_last": cfg.holdout_last,
                          "max_tokens": cfg.max_tokens, "limit": cfg.limit, "categories": categories,
                          "chain": interests is not None},
                artefacts=artefacts)


def _norm(title: str) -> str:
    return " ".join(str(title).casefold().split())


def synthetic_quality(new: pd.DataFrame, catalog_titles, users: int) -> dict[str, float | int]:
    """Duplicates among the new synthetic titles, copies of real catalogue titles, and
    categories that had to be left empty."""
    normed = [_norm(t) for t in new["title"]]
    catalog = {_norm(t) for t in catalog_titles}
    same = sum(t in catalog for t in normed)
    return {"users": users, "generated": len(new), "users_with_items": int(new["user"].nunique()),
            "duplicate_rate": round((len(normed) - len(set(normed))) / len(normed), 6) if normed else 0.0,
            "identical_to_catalog": same,
            "identical_to_catalog_rate": round(same / len(normed), 6) if normed else 0.0,
            "category_outside_vocabulary": int((new["category"] == "").sum())}


def synthetic_histories(synthetic: pd.DataFrame) -> dict[str, list[str]]:
    """User -> synthetic item ids, in generation order (round, then k)."""
    return synthetic.groupby("user", sort=False)["item"].agg(list).to_dict() if len(synthetic) else {}


def history_with_synthetic(user: str, history: Sequence[str],
                           synthetic: pd.DataFrame | Mapping[str, Sequence[str]]) -> list[str]:
    """The history a user encoder should read in training: the user's synthetic item ids,
    then ``history`` (real ids, oldest first, as the models store it). Synthetic ids come
    first so the real clicks stay the most recent and survive ``max_history`` trimming.
    Use only for the *training* input; candidates, negatives and targets stay real.
    ``synthetic`` is the variant's synthetic table, or (faster in a loop over users) its
    :func:`synthetic_histories`.

    >>> syn = pd.DataFrame({"item": ["syn-r1-U1-1", "syn-r1-U1-2"], "user": ["U1", "U1"]})
    >>> history_with_synthetic("U1", ["N3", "N1"], syn)
    ['syn-r1-U1-1', 'syn-r1-U1-2', 'N3', 'N1']
    >>> history_with_synthetic("U2", ["N3"], syn)
    ['N3']
    """
    per_user = synthetic_histories(synthetic) if isinstance(synthetic, pd.DataFrame) else synthetic
    return list(per_user.get(user, [])) + list(history)


def synthetic_item_table(synthetic: pd.DataFrame) -> pd.DataFrame:
    """Synthetic items shaped like an item table (item, title, abstract, category), for a
    news encoder that must encode them; keep it separate from the catalogue."""
    return synthetic.loc[:, ["item", "title", "abstract", "category"]].reset_index(drop=True)
