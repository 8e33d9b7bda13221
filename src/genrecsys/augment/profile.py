"""GENRE §3.3, the LLM as user profiler: a user's reading history (titles, most recent
first, capped at 30 as in GENRE) in; ranked interest topics and optional regions out, both
from closed vocabularies (:mod:`genrecsys.augment.vocab`). The results fill the user-table
columns ``topics`` / ``regions`` that :func:`genrecsys.data.profiles.user_profiles` reads
for the interest fusion (eq. (1)).

The template (v2) asks for ``{"topics": [...], "region": "..."}``, and its contract holds
the answer to that object with both lists closed. Parsing reads that object first, and
stays lenient for answers produced without the contract (``--no-contract``, a server that
refused it, answers cached from v1): a ``[topics]`` field, a "Topics:" line, or else an
answer that is just a list of allowed topics. It is strict about the vocabulary: anything
outside it is dropped and counted, never mapped to a guess. A user whose answer has no
topic list at all is a parse failure and gets no profile (``None``); a user whose list
held no allowed topic gets an empty profile (``[]``); both are "no valid profile" for the
chain generator.

>>> p = parse_profile("[topics] Health, gossip, travel\\n[region] Miami, Florida", Vocabulary.news())
>>> p.topics, p.regions, p.dropped_topics
(['health', 'travel'], ['Florida'], ['gossip'])
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from genrecsys.augment.inputs import user_histories
from genrecsys.augment.variant import Step, Variant
from genrecsys.augment.vocab import Vocabulary
from genrecsys.data.schema import Dataset
from genrecsys.llm.accounting import JobStats
from genrecsys.llm.job import keep_recent
from genrecsys.llm.parse import ParseError, extract_json, match_vocabulary, parse_bracketed, split_list
from genrecsys.llm.types import SamplingParams

_NONE = {"none", "n/a", "na", "unknown", "no region", "not applicable", "-"}
_LINE = re.compile(r"^\s*(?:\*\*)?(topics?|interests?|regions?)(?:\*\*)?\s*[:\-]\s*(.*)$", re.IGNORECASE | re.MULTILINE)


@dataclass
class Profile:
    topics: list[str] = field(default_factory=list)  # ranked, in the vocabulary
    regions: list[str] = field(default_factory=list)
    dropped_topics: list[str] = field(default_factory=list)  # answered but outside the vocabulary
    dropped_regions: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return bool(self.topics)

    @property
    def out_of_vocabulary(self) -> int:  # read by the job accounting (genrecsys.llm.accounting)
        return len(self.dropped_topics) + len(self.dropped_regions)


@dataclass(frozen=True)
class ProfileConfig:
    template: str = "profile_user"
    vocabulary: Vocabulary | None = None  # None: news for news-like item tables, else movies
    history_cap: int = 30  # GENRE: at most 30 browsed titles, most recent first
    holdout_last: int = 2  # see genrecsys.augment.inputs (ignored for datasets with impressions)
    max_topics: int = 5
    max_regions: int = 3
    max_tokens: int = 64
    limit: int | None = None  # only the first N users (the rest keep their columns)
    users: tuple[str, ...] | None = None  # only these users


def _field(text: str, names: Sequence[str]) -> str | None:
    """The value of the first labelled field among ``names`` ([label] or "Label:" line)."""
    for name in names:
        try:
            return parse_bracketed(text, [name])[name]
        except ParseError:
            pass
    for m in _LINE.finditer(text):
        if m.group(1).casefold().rstrip("s") in {n.rstrip("s") for n in names}:
            return m.group(2)
    return None


def _json_profile(text: str) -> tuple[list[str], list[str]] | None:
    """(topics, regions) of a ``{"topics": [...], "region": ...}`` answer; None if it is not one."""
    try:
        obj = extract_json(text)
    except ParseError:
        return None
    if not isinstance(obj, dict):
        return None
    lowered = {str(k).casefold(): v for k, v in obj.items()}
    topics = lowered.get("topics", lowered.get("interests"))
    if not isinstance(topics, list):
        return None
    region = lowered.get("region", lowered.get("regions")) or []
    regions = region if isinstance(region, list) else [region]
    return [str(t) for t in topics], [str(r) for r in regions]


def parse_profile(text: str, vocabulary: Vocabulary, max_topics: int = 5, max_regions: int = 3) -> Profile:
    """Topics and regions in an answer, matched to ``vocabulary`` (see the module doc).

    >>> parse_profile('{"topics": ["Drama", "drama", "Space opera"]}', Vocabulary.movies()).topics
    ['Drama']
    """
    as_json = _json_profile(text)
    if as_json is not None:
        topics, dropped = match_vocabulary(as_json[0], vocabulary.topics)
        regions: list[str] = []
        dropped_regions: list[str] = []
        if vocabulary.regions:
            values = [v for v in as_json[1] if v.casefold() not in _NONE]
            regions, dropped_regions = match_vocabulary(values, vocabulary.regions)
        return Profile(topics[:max_topics], regions[:max_regions], dropped, dropped_regions)
    raw_topics = _field(text, ["topics", "interests"])
    labelled = raw_topics is not None
    if not labelled:  # a bare list: every line that is not a region line
        raw_topics = "\n".join(line for line in text.splitlines() if not re.match(r"\s*\[?regions?\]?", line, re.I))
    topics, dropped = match_vocabulary(split_list(raw_topics), vocabulary.topics)
    # Without a label, the answer counts as a topic list only if it mostly is one: a model
    # that echoes the history ("... FairyTale: A True Story ...") must not get a profile
    # from the titles it repeated.
    if not labelled and (not topics or len(dropped) > len(topics)):
        raise ParseError("no [topics] field, and the answer is not a list of allowed topics")
    regions: list[str] = []
    dropped_regions: list[str] = []
    if vocabulary.regions:
        raw_regions = _field(text, ["region", "regions"]) or ""
        values = [v for v in split_list(raw_regions) if v.casefold() not in _NONE]
        regions, dropped_regions = match_vocabulary(values, vocabulary.regions)
    return Profile(topics[:max_topics], regions[:max_regions], dropped, dropped_regions)


def profile_users(source: Variant, llm, cfg: ProfileConfig | None = None) -> tuple[Step, dict[str, Profile | None]]:
    """Profile users; returns the step (users table with ``topics``/``regions``) and each
    processed user's profile (None: the answer could not be parsed)."""
    cfg = cfg or ProfileConfig()
    ds = source.dataset
    vocab = cfg.vocabulary or Vocabulary.for_items(list(ds.items.columns))
    histories = user_histories(ds, cap=cfg.history_cap, holdout_last=cfg.holdout_last)
    users = [u for u in ds.users["user"].astype(str) if histories.get(u)]  # nothing to profile without history
    if cfg.users is not None:
        wanted = set(cfg.users)
        users = [u for u in users if u in wanted]
    if cfg.limit is not None:
        users = users[:cfg.limit]
    titles = ds.titles()
    rows = [{"history": [titles.get(i, i) for i in histories[u]], "topics": list(vocab.topics),
             "regions": list(vocab.regions), "user_id": u} for u in users]
    template = llm.template(cfg.template)
    stats = JobStats(backend=llm.backend.name, model=llm.backend.model_id)
    comps = llm.run_template(template, rows, params=SamplingParams(max_tokens=cfg.max_tokens),
                             parser=lambda text: parse_profile(text, vocab, cfg.max_topics, cfg.max_regions),
                             truncate=keep_recent("history"), task="profile")
    stats.merge(llm.last_stats)
    profiles: dict[str, Profile | None] = {}
    artefacts = []
    for u, row, c in zip(users, rows, comps):
        p = c.parsed if c.ok else None
        profiles[u] = p
        artefacts.append({"id": u, "input": row["history"], "text": c.text, "error": c.error, "cached": c.cached,
                          "parsed": None if p is None else {"topics": p.topics, "regions": p.regions,
                                                            "dropped_topics": p.dropped_topics,
                                                            "dropped_regions": p.dropped_regions}})
    step = Step(task="profile", template=template.name, template_version=template.version,
                dataset=_with_profiles(ds, profiles), synthetic=source.synthetic, stats=stats, rows=len(users),
                parse_failures=sum(1 for c in comps if c.error and c.error.startswith("parse:")),
                quality=profile_quality(profiles),
                settings={"vocabulary": vocab.name, "topics": list(vocab.topics), "regions": list(vocab.regions),
                          "history_cap": cfg.history_cap, "holdout_last": cfg.holdout_last,
                          "max_topics": cfg.max_topics, "max_regions": cfg.max_regions, "max_tokens": cfg.max_tokens,
                          "limit": cfg.limit},
                artefacts=artefacts)
    return step, profiles


def _with_profiles(ds: Dataset, profiles: dict[str, Profile | None]) -> Dataset:
    users = ds.users.copy()
    for col in ("topics", "regions"):
        if col not in users.columns:
            users[col] = None
    old_topics = dict(zip(users["user"], users["topics"]))
    old_regions = dict(zip(users["user"], users["regions"]))

    def pick(u: str, attr: str, old: dict):
        if u not in profiles:
            return _as_list(old.get(u))  # not processed this round: keep what an earlier round wrote
        p = profiles[u]
        return None if p is None else list(getattr(p, attr))

    users["topics"] = [pick(u, "topics", old_topics) for u in users["user"]]
    users["regions"] = [pick(u, "regions", old_regions) for u in users["user"]]
    return Dataset(name=ds.name, interactions=ds.interactions, items=ds.items, users=users,
                   impressions=ds.impressions)


def _as_list(cell):
    if cell is None or (isinstance(cell, float) and cell != cell):
        return None
    return [str(v) for v in cell]


def profile_quality(profiles: dict[str, Profile | None]) -> dict[str, float | int]:
    """How many profiles are valid, and the fraction of answered topics outside the vocabulary."""
    parsed = [p for p in profiles.values() if p is not None]
    kept = sum(len(p.topics) for p in parsed)
    dropped = sum(len(p.dropped_topics) for p in parsed)
    answered = kept + dropped
    return {"profiled": len(profiles), "valid_profiles": sum(p.valid for p in parsed),
            "empty_profiles": sum(not p.valid for p in parsed),
            "topics_kept": kept, "topics_outside_vocabulary": dropped,
            "topics_outside_vocabulary_rate": round(dropped / answered, 6) if answered else 0.0,
            "regions_outside_vocabulary": sum(len(p.dropped_regions) for p in parsed),
            "with_region": sum(bool(p.regions) for p in parsed)}
