"""The dataset-variant directory every augmentation task writes (the original is never
modified), and reading one back as the input of the next round.

A variant is a saved canonical dataset, so ``genrecsys train --dataset VARIANT_DIR`` and
``load_dataset(VARIANT_DIR)`` load it like any other, plus what only augmentation adds::

    VARIANT_DIR/
      interactions.parquet     real interactions (the "chain" task drops unprofiled users)
      items.parquet            the real catalogue; after "summarize": ``title`` is the LLM
                               title, ``title_original`` the first round's input title
      users.parquet            after "profile": ``topics`` / ``regions`` (ranked lists of
                               strings, None = not profiled); after "generate":
                               ``synthetic_history`` (ids into synthetic_items, in order)
      impressions.parquet      when the parent has logged impressions
      meta.json                {"name": ...}
      synthetic_items.parquet  item, user, title, abstract, category, round, task: LLM items
                               that belong to one user's training history only. They are
                               never in items.parquet or interactions.parquet, so no
                               loader, split or evaluator can make them candidates.
      artefacts.jsonl          one line per prompt of this round: task, id, raw answer,
                               parsed value or error (what ``genrecsys augment show`` shows)
      manifest.json            task, steps, templates and versions, LLM backend and model,
                               requests / cache hits / backend calls / tokens / wall time /
                               cost / cost_total, round, parent, quality checks

>>> # v = open_variant("ml-100k"); ...; write_variant("runs/ml-ns", v, steps, llm)
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from genrecsys.data.schema import SYNTHETIC_FILE, Dataset
from genrecsys.errors import GenrecsysError
from genrecsys.files import building_dir
from genrecsys.llm.accounting import JobStats

FORMAT = "genrecsys-augment-variant"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SYNTHETIC = SYNTHETIC_FILE  # Dataset.load reads it too, so training sees the items
ARTEFACTS = "artefacts.jsonl"
SYNTHETIC_COLUMNS = ("item", "user", "title", "abstract", "category", "round", "task")
USAGE_FIELDS = ("requests", "ok", "failed", "cache_hits", "backend_calls", "reasks", "truncated", "prompt_tokens",
                "completion_tokens", "paid_prompt_tokens", "paid_completion_tokens", "cost", "cost_total",
                # answer quality and structured generation (genrecsys.llm.accounting.Usage)
                "format_failures", "out_of_vocabulary", "out_of_catalog", "contract_violations", "fallbacks",
                "constrained_answers", "constrained_tokens", "constrained_s", "unconstrained_tokens", "unconstrained_s")


def tokens_per_s(usage: dict[str, Any]) -> dict[str, float]:
    """Decode speed of the contracted and the free answers (0 where there were none)."""
    return {f"{side}_tokens_per_s": round(usage[f"{side}_tokens"] / usage[f"{side}_s"], 2) if usage.get(f"{side}_s")
            else 0.0 for side in ("constrained", "unconstrained")}


def empty_synthetic() -> pd.DataFrame:
    """A synthetic-items table with no rows (the canonical columns and types)."""
    return pd.DataFrame({c: pd.Series([], dtype="int64" if c == "round" else str) for c in SYNTHETIC_COLUMNS})


@dataclass
class Variant:
    """A dataset plus what augmentation attached to it. An original dataset is a variant of
    round 0 with no synthetic items and no manifest."""

    dataset: Dataset
    synthetic: pd.DataFrame = field(default_factory=empty_synthetic)
    manifest: dict[str, Any] | None = None
    source: str = ""

    @property
    def round(self) -> int:
        return int(self.manifest.get("round", 0)) if self.manifest else 0


@dataclass
class Step:
    """One task's result: the dataset after it, and everything the manifest records."""

    task: str
    template: str
    template_version: str
    dataset: Dataset
    synthetic: pd.DataFrame
    stats: JobStats
    rows: int
    parse_failures: int
    quality: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    artefacts: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        usage = self.stats.to_dict()
        return {"task": self.task, "template": self.template, "template_version": self.template_version,
                "rows": self.rows, "parse_failures": self.parse_failures,
                "parse_failure_rate": round(self.parse_failures / self.rows, 6) if self.rows else 0.0,
                **{k: usage[k] for k in USAGE_FIELDS}, **tokens_per_s(usage), "wall_s": usage["wall_s"],
                "settings": self.settings, "quality": self.quality}


def open_variant(name_or_path: str | Path, cache_dir: str | Path | None = None) -> Variant:
    """A registered dataset, a dataset directory, or a variant directory (then its synthetic
    items and manifest come along, so it can be the input of the next round)."""
    from genrecsys.data.load import load_dataset

    p = Path(name_or_path)
    if p.is_dir() and (p / MANIFEST).is_file():
        return load_variant(p)
    return Variant(load_dataset(str(name_or_path), cache_dir=cache_dir), source=str(name_or_path))


def load_variant(directory: str | Path) -> Variant:
    """A variant directory written by :func:`write_variant` (an error for anything else)."""
    d = Path(directory)
    if not (d / MANIFEST).is_file():
        raise GenrecsysError(f"{d}: not an augmented variant (no {MANIFEST})")
    manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    synthetic = pd.read_parquet(d / SYNTHETIC) if (d / SYNTHETIC).is_file() else empty_synthetic()
    return Variant(Dataset.load(d), synthetic, manifest, str(d))


def read_artefacts(directory: str | Path) -> list[dict[str, Any]]:
    """The raw LLM answers of a variant's round: task, id, text, parsed value or error."""
    f = Path(directory) / ARTEFACTS
    if not f.is_file():
        return []
    return [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


def with_synthetic_history(users: pd.DataFrame, synthetic: pd.DataFrame) -> pd.DataFrame:
    """The user table with ``synthetic_history`` (synthetic ids per user, generation order)."""
    users = users.drop(columns=["synthetic_history"], errors="ignore")
    if synthetic.empty:
        return users
    per_user = synthetic.groupby("user", sort=False)["item"].agg(list).to_dict()
    return users.assign(synthetic_history=[per_user.get(u, []) for u in users["user"]])


def _accounting(steps: Sequence[Step]) -> dict[str, Any]:
    total = {k: 0 for k in USAGE_FIELDS}
    for s in steps:
        usage = s.stats.to_dict()
        for k in USAGE_FIELDS:
            total[k] += usage[k]
    return total


def build_manifest(parent: Variant, steps: Sequence[Step], *, task: str, name: str, backend: str, model: str,
                   price: dict[str, float], params: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """The manifest of a variant made from ``parent`` by ``steps`` (one round)."""
    round_no = parent.round + 1
    total = _accounting(steps)
    rows = sum(s.rows for s in steps)
    failures = sum(s.parse_failures for s in steps)
    this_round = {"round": round_no, "task": task, "steps": [s.task for s in steps], "backend": backend,
                  "model": model, "cost": total["cost"], "cost_total": total["cost_total"]}
    if parent.manifest:
        parent_ref = {"path": parent.source, "name": parent.dataset.name, "round": parent.round,
                      "task": parent.manifest.get("task")}
        source_dataset = parent.manifest.get("source_dataset", parent.dataset.name)
        history = list(parent.manifest.get("rounds", []))
    else:
        parent_ref = {"path": parent.source, "name": parent.dataset.name, "round": 0, "task": None}
        source_dataset = parent.dataset.name
        history = []
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "task": task,
        "round": round_no, "parent": parent_ref, "source_dataset": source_dataset,
        "rounds": history + [this_round],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "llm": {"backend": backend, "model": model, "params": params, "price_per_1m_tokens": price},
        "templates": {s.template: s.template_version for s in steps},
        "limit": next((s.settings["limit"] for s in steps if s.settings.get("limit") is not None), None),
        "rows": rows, "parse_failures": failures,
        **total, **tokens_per_s(total), "wall_s": round(wall_s, 3),
        "steps": [s.record() for s in steps],
        "quality": {s.task: {"parse_failure_rate": s.record()["parse_failure_rate"], **s.quality} for s in steps},
    }


def write_variant(output: str | Path, parent: Variant, steps: Sequence[Step], manifest: dict[str, Any]) -> Path:
    """Write the last step's dataset as a variant directory, atomically (a temp directory
    renamed into place), refusing to overwrite the parent or a directory that is not a
    variant."""
    target = Path(output).resolve()
    if not steps:
        raise GenrecsysError("nothing to write: no augmentation step ran")
    if parent.source and Path(parent.source).resolve() == target:
        raise GenrecsysError(f"{target}: the output would replace the input; choose another --output")
    if target.exists() and any(target.iterdir()) and not (target / MANIFEST).is_file():
        raise GenrecsysError(f"{target}: exists and is not an augmented variant; refusing to replace it")
    last = steps[-1]
    with building_dir(target, replace=True) as tmp:
        ds = Dataset(name=manifest["name"], interactions=last.dataset.interactions, items=last.dataset.items,
                     users=with_synthetic_history(last.dataset.users, last.synthetic),
                     impressions=last.dataset.impressions)
        ds.save(tmp)
        if not last.synthetic.empty:
            last.synthetic.loc[:, list(SYNTHETIC_COLUMNS)].to_parquet(tmp / SYNTHETIC, index=False)
        with open(tmp / ARTEFACTS, "w", encoding="utf-8") as f:
            for s in steps:
                for a in s.artefacts:
                    f.write(json.dumps({"task": s.task, **a}, ensure_ascii=False, default=str) + "\n")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n",
                                    encoding="utf-8")
    return target
