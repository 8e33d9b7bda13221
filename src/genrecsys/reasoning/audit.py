"""Trust checks of a RELAND run: the quality of its reasoning pool, and rationale leakage.

RELAND serves one seed user's rationale to every user retrieved to that seed. When the
rationale names items from the *seed's* history that the receiving user never interacted
with, the explanation discloses another user's consumption. `leakage` measures it per
served explanation; `redact` removes such items (a numbered line naming one is dropped, a
mention elsewhere becomes "another title"), which `explanations(..., redact_leaks=True)`
and `genrecsys serve/recommend --redact-leaks` apply.

>>> redact("Step 2:\\nItems:\\n1. Fargo (1996)\\n2. Heat (1995)", ["Fargo"])
'Step 2:\\nItems:\\n2. Heat (1995)'
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from genrecsys.reasoning.rationale import TitleCatalog, normalize_title

_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+(.+?)\s*$", re.MULTILINE)


def prose_keys(catalog: TitleCatalog) -> list[tuple[int, str]]:
    """(item, normalised title) of the titles of at least two words: the ones `named_items`
    looks for in prose (one word, e.g. "Heat", is too often an ordinary word)."""
    keys = ((item, normalize_title(title)) for item, title in catalog.titles.items())
    return [(item, key) for item, key in keys if key.count(" ") >= 1]


def named_items(text: str, catalog: TitleCatalog, keys: list[tuple[int, str]] | None = None) -> set[int]:
    """Catalog items a rationale names: its numbered lines (matched as the pool's parser
    does), and titles of at least two words that occur verbatim (normalised) in the prose.
    ``keys``: `prose_keys(catalog)`, when the caller checks many texts."""
    found = {i for name in _NUMBERED.findall(text) if (i := catalog.match(name)) is not None}
    prose = f" {normalize_title(_NUMBERED.sub(' ', text))} "
    found.update(item for item, key in (keys if keys is not None else prose_keys(catalog)) if f" {key} " in prose)
    return found


def leakage(split, assignment, catalog: TitleCatalog | None = None) -> tuple[dict[str, Any], dict[str, set[int]]]:
    """(summary, user -> leaked items) over every explanation served to a user other than its seed.

    Histories are every known interaction (train, valid and test) of the two users."""
    from genrecsys.data.splits import concat_parts

    catalog = catalog or TitleCatalog.from_split(split)
    full = concat_parts(split.history("test"), split.test)
    keys = prose_keys(catalog)
    named_cache: dict[str, set[int]] = {}
    leaked: dict[str, set[int]] = {}
    served = with_items = 0
    for row in assignment.itertuples(index=False):
        if str(row.user) == str(row.seed_user):
            continue
        served += 1
        key = str(row.seed_user)
        if key not in named_cache:
            named_cache[key] = named_items(f"{row.step1}\n{row.step2}", catalog, keys)
        named = named_cache[key]
        with_items += bool(named)
        seed_hist = set(full.of(int(row.seed_index)).tolist())
        own = set(full.of(int(row.user_index)).tolist())
        hit = (named & seed_hist) - own
        if hit:
            leaked[str(row.user)] = hit
    n_leaked = sum(len(v) for v in leaked.values())
    summary = {"explanations": served, "naming_items": with_items, "leaking": len(leaked),
               "leak_rate": len(leaked) / served if served else float("nan"),
               "leaked_items_per_leaking": n_leaked / len(leaked) if leaked else 0.0}
    return summary, leaked


def redact(text: str, titles: Iterable[str]) -> str:
    """``text`` without the given titles: numbered lines naming one are dropped, other
    mentions become "another title"."""
    keys = [normalize_title(t) for t in titles if normalize_title(t)]
    if not keys:
        return text
    out = []
    for line in text.split("\n"):
        m = _NUMBERED.match(line)
        if m and normalize_title(m.group(1)) in keys:
            continue
        for t in titles:
            line = re.sub(re.escape(t), "another title", line, flags=re.IGNORECASE)
        out.append(line)
    return "\n".join(out)


def pool_quality(pool, genres: Sequence[str]) -> dict[str, float]:
    """Format and grounding of a reasoning pool's answers: unparsed share, out-of-catalog
    share of named items, out-of-vocabulary share of named categories."""
    vocab = {g.casefold() for g in genres}
    names = sum(len(x) for x in pool["item_names"]) if "item_names" in pool else 0
    unmatched = sum(len(x) for x in pool["unmatched"]) if "unmatched" in pool else 0
    cats = [c for x in pool["categories"] for c in x] if "categories" in pool else []
    oov = sum(str(c).strip().casefold() not in vocab for c in cats)
    return {"seeds": len(pool), "unparsed_rate": float(1 - np.mean(pool["parsed"])) if len(pool) else float("nan"),
            "items_named": names, "out_of_catalog_rate": unmatched / names if names else float("nan"),
            "categories_named": len(cats), "out_of_vocabulary_rate": oov / len(cats) if cats else float("nan")}
