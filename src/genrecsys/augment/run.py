"""One call per augmentation task: read a dataset (or a variant, for the next round), run
the task's steps through an LLM, write a new variant directory with its manifest.

>>> # from genrecsys.llm import LLM
>>> # augment("summarize", "ml-100k", "runs/ml-100k-ns", LLM(cfg))   -> Path("runs/ml-100k-ns")
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from genrecsys.augment.chain import all_steps, chain_steps
from genrecsys.augment.generate import GenerateConfig, generate_items
from genrecsys.augment.profile import ProfileConfig, profile_users
from genrecsys.augment.summarize import SummarizeConfig, summarize_items
from genrecsys.augment.variant import Step, Variant, build_manifest, open_variant, write_variant
from genrecsys.errors import GenrecsysError


@dataclass(frozen=True)
class AugmentConfig:
    """Settings of every task; each task reads the parts it uses."""

    summarize: SummarizeConfig = field(default_factory=SummarizeConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)


TASKS: dict[str, Callable[[Variant, object, AugmentConfig], list[Step]]] = {
    "summarize": lambda v, llm, c: [summarize_items(v, llm, c.summarize)],
    "profile": lambda v, llm, c: [profile_users(v, llm, c.profile)[0]],
    "generate": lambda v, llm, c: [generate_items(v, llm, c.generate)],
    "chain": lambda v, llm, c: chain_steps(v, llm, c.profile, c.generate, filter_unprofiled=True),
    "all": lambda v, llm, c: all_steps(v, llm, c.summarize, c.profile, c.generate),
}


def augment(task: str, dataset: str | Path | Variant, output: str | Path, llm, cfg: AugmentConfig | None = None, *,
            cache_dir: str | Path | None = None, name: str | None = None) -> Path:
    """Run ``task`` (summarize, profile, generate, chain, all) on ``dataset`` and write the
    variant to ``output``. ``llm`` is a :class:`genrecsys.llm.LLM`; its cache makes a rerun
    free, and a run interrupted before the end leaves no variant behind."""
    if task not in TASKS:
        raise GenrecsysError(f"unknown augmentation task {task!r}; choose one of: {', '.join(TASKS)}")
    t0 = time.perf_counter()
    source = dataset if isinstance(dataset, Variant) else open_variant(dataset, cache_dir)
    steps = TASKS[task](source, llm, cfg or AugmentConfig())
    backend = llm.backend
    price = llm.prices.price(backend.model_id)
    # every task decodes greedily (SamplingParams defaults), so a rerun asks the same prompts
    params = {s.task: {"max_tokens": s.settings.get("max_tokens"), "temperature": 0.0} for s in steps}
    manifest = build_manifest(source, steps, task=task, name=name or f"{source.dataset.name}+{task}",
                              backend=backend.name, model=backend.model_id,
                              price={"prompt": price.prompt, "completion": price.completion}, params=params,
                              wall_s=time.perf_counter() - t0)
    return write_variant(output, source, steps, manifest)
