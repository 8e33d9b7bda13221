"""The LLM reasoning pool (RELAND §3.1.2): one rationale per seed user, with its vector.

:func:`build_pool` renders the CoT template for every seed (history titles, most recent
first), answers all of them in one batch through :class:`~genrecsys.llm.client.LLM`,
parses each answer into steps and matches the items it names to the catalog. Every
answer goes through the LLM's SQLite cache, so building a larger pool over the same seeds
plus new ones pays only for the new ones; a rerun pays nothing.

A seed whose answer parses to nothing is kept, flagged ``parsed = False``, with the
whole answer as its Step 1 and Step 2 (an empty answer gets a fallback text naming the
user's recent items). A seed whose request failed (backend error) is left out and named
in the pool's ``meta["failed"]``; failures are not cached, so the next build retries them.

On disk a pool is ``pool.parquet`` (one row per seed), ``vectors.npy`` (S, d) float32
seed vectors aligned with the rows, and ``pool.json`` (template, model, dimension, notes).

>>> # pool, stats = build_pool(LLM(cfg), split, M, adaptive_seed_sample(M, split.train.lengths()))
>>> # metrics["llm"] = llm_metrics(pool, stats, split.n_users)
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.files import building_dir
from genrecsys.llm.accounting import JobStats
from genrecsys.llm.templates import PromptTemplate
from genrecsys.reasoning.rationale import TitleCatalog, parse_rationale
from genrecsys.reasoning.sampling import SeedSample

if TYPE_CHECKING:
    from genrecsys.llm.client import LLM

FALLBACK = "No rationale (the model gave an empty answer). Recently chose: {titles}."
TEXT_FIELDS = ("text", "step1", "step2")


@dataclass(frozen=True)
class PoolConfig:
    """How seed users are prompted."""

    template: str | PromptTemplate = "reland_cot"  # or "reland_direct" (the "w/o r.p." ablation), a user template
    n_items: int = 10  # items asked for in Step 2
    max_history: int = 30  # most recent items shown; older ones are dropped first when a prompt overflows
    condense: bool = False  # add Step 0 (the paper's optional industrial step)
    show_categories: bool = True  # item categories beside titles, and the catalog's category list
    max_tokens: int = 256  # answer budget per seed
    fuzzy_cutoff: float = 0.9  # difflib ratio for matching a named item to a catalog title
    # The contract's closed list of Step-2 items leaves out the seed's own history, so "titles
    # this user has not chosen yet" holds by construction and a served rationale cannot repeat
    # the seed's history (`genrecsys audit`: 89% of SmolLM2's served explanations did). Off by
    # default: every seed then has its own ~1,700-title grammar, which xgrammar compiles in
    # ~60 s per seed on 2 cores; llguidance (llm.grammar_engine) answers in ~4 s each.
    fresh_items: bool = False

    def __post_init__(self) -> None:
        if self.n_items < 1 or self.max_history < 1 or self.max_tokens < 1 or not 0 < self.fuzzy_cutoff <= 1:
            raise GenrecsysError("pool: n_items, max_history, max_tokens >= 1 and fuzzy_cutoff in (0, 1] are required")


@dataclass
class ReasoningPool:
    """Seed rows (``frame``) and their behaviour vectors (``vectors``, row i = frame row i)."""

    frame: pd.DataFrame
    vectors: np.ndarray  # (S, d) float32
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.frame) != len(self.vectors):
            raise GenrecsysError(f"pool has {len(self.frame)} rows but {len(self.vectors)} vectors")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def users(self) -> np.ndarray:
        return self.frame["user"].to_numpy(np.int64)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def texts(self, field_name: str = "step2") -> list[str]:
        """Per row: the whole answer ("text"), the preference summary ("step1") or the
        recommendations ("step2", what the paper encodes)."""
        if field_name not in TEXT_FIELDS:
            raise GenrecsysError(f"rationale field must be one of {', '.join(TEXT_FIELDS)}, got {field_name!r}")
        return self.frame[field_name].astype(str).tolist()

    def save(self, directory: str | Path) -> Path:
        """Write pool.parquet, vectors.npy and pool.json; the directory appears in one rename."""
        target = Path(directory)
        with building_dir(target, replace=True) as tmp:
            self.frame.to_parquet(tmp / "pool.parquet", index=False)
            np.save(tmp / "vectors.npy", self.vectors.astype(np.float32))
            (tmp / "pool.json").write_text(json.dumps(self.meta, indent=2))
        return target


def load_pool(directory: str | Path) -> ReasoningPool:
    """A pool saved by :meth:`ReasoningPool.save`."""
    d = Path(directory)
    missing = [f for f in ("pool.parquet", "vectors.npy", "pool.json") if not (d / f).is_file()]
    if missing:
        raise GenrecsysError(f"{d}: not a reasoning pool (missing {', '.join(missing)})")
    frame = pd.read_parquet(d / "pool.parquet")
    for col in _LIST_COLUMNS:  # Parquet gives arrays back; keep the lists build_pool made
        if col in frame.columns:
            frame[col] = [list(v) if v is not None else [] for v in frame[col]]
    return ReasoningPool(frame, np.load(d / "vectors.npy"), json.loads((d / "pool.json").read_text()))


def _categories(split: SplitData) -> dict[int, list[str]]:
    """Item index -> its categories, from the item table's 'genres' or 'category' column."""
    items = split.dataset.items
    col = next((c for c in ("genres", "category") if c in items.columns), None)
    if col is None:
        return {}
    by_raw = {str(k): [g for g in v.split("|") if g] if isinstance(v, str) else []
              for k, v in zip(items["item"], items[col])}
    return {i: by_raw.get(str(split.item_ids[i]), []) for i in range(1, split.n_items + 1)}


def prompt_rows(split: SplitData, users: Sequence[int], catalog: TitleCatalog,
                config: PoolConfig) -> list[dict[str, Any]]:
    """Template variables per seed: its training history as titles, most recent first.

    Every row also carries ``titles``, the catalog as prompts show it, which the built-in
    templates' contracts use as the closed list of items (the prompts do not print it);
    with ``config.fresh_items`` minus the seed's own training history (see PoolConfig)."""
    cats = _categories(split) if config.show_categories else {}
    all_cats = sorted({c for v in cats.values() for c in v})
    display = {i: catalog.display(i) for i in range(1, split.n_items + 1)}
    everything = sorted(set(display.values()))
    rows = []
    for u in users:
        if config.fresh_items:
            seen = set(split.train.of(int(u)).tolist())
            titles = sorted({t for i, t in display.items() if i not in seen})
        else:
            titles = everything
        recent = split.train.of(int(u))[::-1][:config.max_history]
        lines = [catalog.display(int(i)) + (f" [{', '.join(cats[int(i)])}]" if cats.get(int(i)) else "")
                 for i in recent]
        row: dict[str, Any] = {"history": lines, "n_items": config.n_items, "condense": config.condense,
                               "titles": titles}
        if all_cats:
            row["categories"] = all_cats
        rows.append(row)
    return rows


def check_user_matrix(user_matrix: np.ndarray, n_users: int) -> np.ndarray:
    """M as float32, checked to be (n_users + 1, d) with finite values."""
    m = np.asarray(user_matrix, dtype=np.float32)
    if m.ndim != 2 or len(m) < n_users + 1:
        raise GenrecsysError(f"user matrix must be (n_users + 1, d) = ({n_users + 1}, d) with row 0 = padding, "
                             f"got shape {m.shape}")
    if not np.isfinite(m).all():
        raise GenrecsysError("user matrix holds NaN or inf values")
    return m


def build_pool(llm: LLM, split: SplitData, user_matrix: np.ndarray, seeds: SeedSample | Sequence[int],
               config: PoolConfig | None = None, *, catalog: TitleCatalog | None = None,
               out_dir: str | Path | None = None) -> tuple[ReasoningPool, JobStats]:
    """Ask the LLM for every seed's rationale; returns the pool and this build's LLM stats.

    ``llm`` is a :class:`genrecsys.llm.client.LLM`; ``user_matrix`` is M, (n_users + 1, d)
    with user u at row u + 1; ``seeds`` are user indices (or a :class:`SeedSample`). Seeds
    with an empty training history are skipped with a note in ``meta["notes"]``.
    """
    from genrecsys.llm.job import keep_recent
    from genrecsys.llm.types import SamplingParams

    c = config or PoolConfig()
    m = check_user_matrix(user_matrix, split.n_users)
    users = np.asarray(seeds.users if isinstance(seeds, SeedSample) else list(seeds), dtype=np.int64)
    strategy = (seeds.strategy.tolist() if isinstance(seeds, SeedSample) else ["given"] * len(users))
    if len(users) == 0:
        raise GenrecsysError("no seed users given: the reasoning pool would be empty")
    bad = users[(users < 0) | (users >= split.n_users)]
    if len(bad):
        raise GenrecsysError(f"seed user index {int(bad[0])} is out of range 0..{split.n_users - 1}")
    if len(np.unique(users)) != len(users):
        raise GenrecsysError("seed users must be distinct")
    lengths = split.train.lengths()[users]
    notes = list(seeds.notes) if isinstance(seeds, SeedSample) else []
    if (lengths == 0).any():
        notes.append(f"{int((lengths == 0).sum())} seed(s) with an empty history skipped")
        keep = lengths > 0
        users, strategy = users[keep], [s for s, k in zip(strategy, keep) if k]
        if len(users) == 0:
            raise GenrecsysError("every seed user has an empty history: nothing to reason about")
    catalog = catalog or TitleCatalog.from_split(split, c.fuzzy_cutoff)
    template = llm.template(c.template)
    rows = prompt_rows(split, users, catalog, c)
    comps = llm.run_template(template, rows, params=SamplingParams(max_tokens=c.max_tokens),
                             truncate=keep_recent("history"), task="reland")
    stats = llm.last_stats
    records, keep_idx, failed = [], [], []
    for j, (u, row, comp) in enumerate(zip(users, rows, comps)):
        if not comp.ok:
            failed.append({"user": int(u), "error": comp.error})
            continue
        r = parse_rationale(comp.text, fallback=FALLBACK.format(titles="; ".join(row["history"][:5])))
        matched, unmatched = catalog.match_all(r.item_names)
        seen = set(split.train.of(int(u)).tolist())  # small models often repeat the history back
        records.append({
            "user": int(u), "user_id": str(split.user_ids[u]), "strategy": strategy[j],
            "text": comp.text, "step0": r.step0, "step1": r.step1, "step2": r.step2, "parsed": r.parsed,
            "categories": list(r.categories), "item_names": list(r.item_names),
            "matched_items": [int(i) for i in matched], "unmatched": list(unmatched),
            "novel_items": [int(i) for i in matched if int(i) not in seen],
            "backend": comp.backend, "model": comp.model, "template": template.name,
            "template_version": template.version, "finish_reason": comp.finish_reason,
            "prompt_tokens": int(comp.prompt_tokens), "completion_tokens": int(comp.completion_tokens),
        })
        keep_idx.append(j)
    if failed:
        notes.append(f"{len(failed)} seed(s) failed at the LLM and were left out (retried on the next build)")
    known_cats = {c.casefold() for v in _categories(split).values() for c in v}
    stats.count("reland", format_failures=sum(not r["parsed"] for r in records),
                out_of_catalog=sum(len(r["unmatched"]) for r in records),
                out_of_vocabulary=sum(c.casefold() not in known_cats for r in records for c in r["categories"])
                if known_cats else 0)
    frame = pd.DataFrame.from_records(records, columns=_COLUMNS)
    frame = frame.astype({"user": "int64", "parsed": "bool", "prompt_tokens": "int64", "completion_tokens": "int64"})
    vectors = m[users[keep_idx] + 1] if keep_idx else np.zeros((0, m.shape[1]), dtype=np.float32)
    meta = {"template": template.name, "template_version": template.version, "backend": llm.backend.name,
            "model": llm.backend.model_id, "dim": int(m.shape[1]), "n_users": int(split.n_users),
            "dataset": split.dataset.name, "config": asdict(c), "notes": notes, "failed": failed}
    pool = ReasoningPool(frame, vectors, meta)
    if out_dir is not None:
        pool.save(out_dir)
    return pool, stats


_LIST_COLUMNS = ("categories", "item_names", "matched_items", "unmatched", "novel_items")
_COLUMNS = ["user", "user_id", "strategy", "text", "step0", "step1", "step2", "parsed", "categories", "item_names",
            "matched_items", "unmatched", "novel_items", "backend", "model", "template", "template_version",
            "finish_reason", "prompt_tokens", "completion_tokens"]


def llm_metrics(pool: ReasoningPool, stats: JobStats, n_users: int) -> dict[str, Any]:
    """The ``"llm"`` block of metrics.json: what producing the pool took.

    ``calls``, ``prompt_tokens`` and ``completion_tokens`` count every answer the pool
    needed, served from the cache or not (the paper's cost is tokens per pool);
    ``backend_calls`` and ``cache_hits`` say what this run actually sent.
    """
    t = stats.total
    return {"calls": t.requests + t.reasks, "users": int(n_users), "seed_users": len(pool),
            "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
            "backend_calls": t.backend_calls, "cache_hits": t.cache_hits, "failed": t.failed,
            "unparsed": int((~pool.frame["parsed"]).sum()) if len(pool) else 0,
            # answer quality under (or without) the template's contract; see genrecsys.llm.accounting
            **{k: getattr(t, k) for k in ("format_failures", "out_of_vocabulary", "out_of_catalog",
                                          "contract_violations", "fallbacks", "constrained_answers")},
            "constrained_tokens_per_s": round(t.constrained_tokens_per_s, 2),
            "unconstrained_tokens_per_s": round(t.unconstrained_tokens_per_s, 2)}
