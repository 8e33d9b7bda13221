"""GENRE §3.2, the LLM as news (item) summarizer: title + description + category in, one
more informative title out; the new title replaces the original in the variant's item
table, and the original stays in ``title_original``.

Small local models (the embedded SmolLM2-135M) rarely answer with exactly ``[new title]``,
so :func:`parse_title` also takes "Title: ...", a quoted title, or the first line that
reads like a title. It never invents one: an empty, echoed, over-long or cut-off answer
is a parse failure, re-asked once by the LLM layer, and then the item keeps its title.

>>> parse_title('Sure! Here is the title: "Toy Story: toys come alive in a Pixar comedy"')
'Toy Story: toys come alive in a Pixar comedy'
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from genrecsys.augment.inputs import item_rows
from genrecsys.augment.variant import Step, Variant
from genrecsys.data.schema import Dataset
from genrecsys.llm.accounting import JobStats
from genrecsys.llm.parse import ParseError, check_title, parse_bracketed_value
from genrecsys.llm.types import SamplingParams

_LABEL = re.compile(r"^\s*(?:\*\*)?(?:(?:new|enhanced|better|improved|rewritten)\s+)?title(?:\*\*)?\s*[:\-]\s*",
                    re.IGNORECASE)
_PREAMBLE = re.compile(r"^(?:sure|okay|ok|here(?:'s| is| are)|certainly|of course)\b", re.IGNORECASE)
_QUOTE_PAIRS = ('""', "''", "\u201c\u201d", "\u2018\u2019", "**")


@dataclass(frozen=True)
class SummarizeConfig:
    template: str = "summarize_item"
    max_tokens: int = 48  # a title; more only invites rambling
    max_words: int = 30  # a longer answer is not a title
    limit: int | None = None  # only the first N items (the rest keep their titles)
    items: tuple[str, ...] | None = None  # only these items


def _unquote(text: str) -> str:
    text = text.strip()
    for a, b in (p if len(p) == 2 else (p[:1], p[1:]) for p in _QUOTE_PAIRS):
        if len(text) >= 2 and text.startswith(a) and text.endswith(b):
            return text[len(a):len(text) - len(b)].strip()
    quoted = re.search(r"[\"\u201c]([^\"\u201d]{3,})[\"\u201d]", text)  # a title quoted inside a sentence
    return quoted.group(1).strip() if quoted and _PREAMBLE.match(text) else text


def parse_title(text: str, max_words: int = 30) -> str:
    """The new title in an answer: ``[title]``, else "Title: ...", a quoted title, or the
    first line that is not a preamble. Raises ParseError if there is none.

    >>> parse_title("[Heat: a heist thriller]\\nI hope this helps!")
    'Heat: a heist thriller'
    >>> parse_title("New title: Heat (1995) - cops and robbers in LA")
    'Heat (1995) - cops and robbers in LA'
    >>> parse_title("[Title: GoldenEye: a new era]")
    'GoldenEye: a new era'
    """
    try:
        bracketed = parse_bracketed_value(text)
    except ParseError as exc:
        if exc.truncated:
            raise
    else:  # a bracketed answer is the requested format: judge it, do not look further
        labelled = _LABEL.match(bracketed)  # "[Title: Heat ...]": the label is not part of the title
        return check_title(bracketed[labelled.end():] if labelled else bracketed, max_words)
    for line in text.splitlines():
        line = line.strip().lstrip("#>-* ").strip()
        if not line:
            continue
        labelled = _LABEL.match(line)
        if labelled:
            line = line[labelled.end():]
        elif _PREAMBLE.match(line) and line.rstrip().endswith(":"):
            continue  # "Here is the new title:" introduces the answer on the next line
        elif _PREAMBLE.match(line) and ":" in line:
            line = line.split(":", 1)[1]
        return check_title(_unquote(line), max_words)
    raise ParseError("no title in the answer")


def enhanced_items(items, titles: dict[str, str]):
    """The item table with ``titles`` applied; ``title_original`` keeps the first input
    title across rounds."""
    out = items.copy()
    if "title" not in out.columns:
        out["title"] = ""
    if "title_original" not in out.columns:
        out["title_original"] = out["title"]
    out["title"] = [titles.get(i, t) for i, t in zip(out["item"], out["title"])]
    return out


def summarize_items(source: Variant, llm, cfg: SummarizeConfig | None = None) -> Step:
    """Rewrite item titles; unparsed items keep theirs. ``llm`` is a :class:`genrecsys.llm.LLM`."""
    cfg = cfg or SummarizeConfig()
    rows = item_rows(source.dataset)
    if cfg.items is not None:
        rows = rows[rows["item"].isin(set(cfg.items))]
    if cfg.limit is not None:
        rows = rows.head(cfg.limit)
    template = llm.template(cfg.template)
    stats = JobStats(backend=llm.backend.name, model=llm.backend.model_id)
    comps = llm.run_template(template, rows[["title", "description", "category"]].to_dict("records"),
                             params=SamplingParams(max_tokens=cfg.max_tokens),
                             parser=lambda text: parse_title(text, cfg.max_words), task="summarize")
    stats.merge(llm.last_stats)
    titles: dict[str, str] = {}
    artefacts = []
    for item, old, c in zip(rows["item"], rows["title"], comps):
        if c.ok and c.parsed:
            titles[item] = c.parsed
        artefacts.append({"id": item, "input": old, "text": c.text, "parsed": c.parsed if c.ok else None,
                          "error": c.error, "cached": c.cached})
    ds = source.dataset
    new = Dataset(name=ds.name, interactions=ds.interactions, items=enhanced_items(ds.items, titles),
                  users=ds.users, impressions=ds.impressions)
    parse_failures = sum(1 for c in comps if c.error and c.error.startswith("parse:"))
    return Step(task="summarize", template=template.name, template_version=template.version, dataset=new,
                synthetic=source.synthetic, stats=stats, rows=len(rows), parse_failures=parse_failures,
                quality=title_quality(list(titles.values()), dict(zip(rows["item"], rows["title"])), titles,
                                      failed=sum(1 for c in comps if not c.ok)),
                settings={"max_tokens": cfg.max_tokens, "max_words": cfg.max_words, "limit": cfg.limit},
                artefacts=artefacts)


def _norm(title: str) -> str:
    return " ".join(title.casefold().split())


def title_quality(new_titles: Sequence[str], originals: dict[str, str], titles: dict[str, str],
                  failed: int) -> dict[str, float | int]:
    """Duplicate rate among the new titles, and how many merely repeat the original."""
    normed = [_norm(t) for t in new_titles]
    dup = (len(normed) - len(set(normed))) / len(normed) if normed else 0.0
    unchanged = sum(1 for i, t in titles.items() if _norm(t) == _norm(originals.get(i, "")))
    return {"enhanced": len(titles), "failed": failed, "duplicate_rate": round(dup, 6), "unchanged": unchanged}
