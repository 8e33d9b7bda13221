"""Token, time and money accounting per job and per task.

Two money figures are kept because they answer different questions: ``cost`` is what this
run paid (cache hits are free), ``cost_total`` is what producing all its answers cost,
cached or not (the figure GENRE's cost tables and cost conversion rate need).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from genrecsys.errors import GenrecsysError
from genrecsys.llm.types import Completion


@dataclass(frozen=True)
class Price:
    """US dollars per one million tokens."""

    prompt: float = 0.0
    completion: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6


# List prices (USD per 1M tokens) for the models the papers used, as the providers
# published them; local models cost nothing per token. Override from config/YAML.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-3.5-turbo": Price(0.5, 1.5),
    "gpt-4o-mini": Price(0.15, 0.6),
    "gpt-4o": Price(2.5, 10.0),
}


@dataclass(frozen=True)
class PriceTable:
    """Model name -> price; ``default`` for models not listed (local models: 0).

    >>> PriceTable({"m": Price(1.0, 2.0)}).cost("m", 1_000_000, 500_000)
    2.0
    """

    prices: Mapping[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    default: Price = Price()

    def price(self, model: str) -> Price:
        if model in self.prices:
            return self.prices[model]
        # "openai:gpt-4o-mini" or "org/gpt-4o-mini" should still find "gpt-4o-mini"
        tail = model.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        return self.prices.get(tail, self.default)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return self.price(model).cost(prompt_tokens, completion_tokens)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "PriceTable":
        """``{"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}, "default": {...}}``."""
        prices = dict(DEFAULT_PRICES)
        default = Price()
        for name, p in raw.items():
            if not isinstance(p, Mapping) or set(p) - {"prompt", "completion"}:
                raise GenrecsysError(f"price for {name!r} must be {{prompt: USD per 1M, completion: USD per 1M}}, got {p!r}")
            price = Price(float(p.get("prompt", 0.0)), float(p.get("completion", 0.0)))
            if name == "default":
                default = price
            else:
                prices[name] = price
        return cls(prices, default)

    @classmethod
    def load(cls, path: str | Path) -> "PriceTable":
        from genrecsys.config import load_yaml

        return cls.from_dict(load_yaml(path))


@dataclass
class Usage:
    """Counts for one task (or a whole job). ``requests == ok + failed`` always holds."""

    requests: int = 0
    ok: int = 0
    failed: int = 0
    cache_hits: int = 0
    backend_calls: int = 0
    truncated: int = 0
    reasks: int = 0
    overflow_truncated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    paid_prompt_tokens: int = 0
    paid_completion_tokens: int = 0
    cost: float = 0.0
    cost_total: float = 0.0
    # answer quality, per row (after re-asks): under a contract all three should be 0
    format_failures: int = 0  # answers the task's parser could not read
    out_of_vocabulary: int = 0  # values outside a closed list (topics, regions, categories)
    out_of_catalog: int = 0  # item references that are no catalog item
    contract_violations: int = 0  # answers to a contracted request that do not satisfy its contract
    fallbacks: int = 0  # contracted requests answered without the contract (server refused, kind unsupported)
    constrained_answers: int = 0  # rows whose answer was decoded under its contract (cached or not)
    # generation speed, backend answers only: decode time split by contracted or not
    constrained_tokens: int = 0
    constrained_s: float = 0.0
    unconstrained_tokens: int = 0
    unconstrained_s: float = 0.0

    def add_row(self, comp: Completion, prices: PriceTable) -> None:
        """Account one finished row (after any re-asks)."""
        self.requests += 1
        if comp.ok:
            self.ok += 1
        else:
            self.failed += 1
        if comp.finish_reason == "length":
            self.truncated += 1
        if comp.error and comp.error.startswith("parse:"):
            self.format_failures += 1
        if comp.fallback:
            self.fallbacks += 1
        if comp.constrained:
            self.constrained_answers += 1
        for name in ("out_of_vocabulary", "out_of_catalog"):
            setattr(self, name, getattr(self, name) + int(getattr(comp.parsed, name, 0) or 0))

    def add_time(self, comp: Completion, seconds: float) -> None:
        """Account the decode time of one backend answer (its share of the round's wall time)."""
        if comp.constrained:
            self.constrained_tokens += comp.completion_tokens
            self.constrained_s += seconds
        else:
            self.unconstrained_tokens += comp.completion_tokens
            self.unconstrained_s += seconds

    @property
    def constrained_tokens_per_s(self) -> float:
        return self.constrained_tokens / self.constrained_s if self.constrained_s > 0 else 0.0

    @property
    def unconstrained_tokens_per_s(self) -> float:
        return self.unconstrained_tokens / self.unconstrained_s if self.unconstrained_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The counts plus derived rates, as manifests and reports show them."""
        d = asdict(self)
        d.update(constrained_tokens_per_s=round(self.constrained_tokens_per_s, 2),
                 unconstrained_tokens_per_s=round(self.unconstrained_tokens_per_s, 2))
        return d

    def add_call(self, comp: Completion, prices: PriceTable) -> None:
        """Account one answer, from the backend or from the cache (re-asks included)."""
        self.prompt_tokens += comp.prompt_tokens
        self.completion_tokens += comp.completion_tokens
        full = prices.cost(comp.model, comp.prompt_tokens, comp.completion_tokens)
        self.cost_total += full
        if comp.cached:
            self.cache_hits += 1
        else:
            self.backend_calls += 1
            self.paid_prompt_tokens += comp.prompt_tokens
            self.paid_completion_tokens += comp.completion_tokens
            self.cost += full


@dataclass
class JobStats:
    """What one job did, overall and per task. ``wall_s`` is the job's elapsed time."""

    total: Usage = field(default_factory=Usage)
    tasks: dict[str, Usage] = field(default_factory=dict)
    wall_s: float = 0.0
    backend: str = ""
    model: str = ""

    def task(self, name: str) -> Usage:
        return self.tasks.setdefault(name, Usage())

    def count(self, task: str, **counts: int) -> None:
        """Add task-level counts a caller measured itself (e.g. ``out_of_catalog=3``) to
        the task and to the total."""
        for usage in (self.total, self.task(task)):
            for name, n in counts.items():
                setattr(usage, name, getattr(usage, name) + int(n))

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second of wall time, counting only tokens the backend produced."""
        return self.total.paid_completion_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = self.total.summary()
        d.update(wall_s=round(self.wall_s, 3), tokens_per_s=round(self.tokens_per_s, 2),
                 backend=self.backend, model=self.model,
                 tasks={k: v.summary() for k, v in self.tasks.items()})
        return d

    def merge(self, other: "JobStats") -> None:
        """Fold another job's counts into this one (e.g. the rounds of a multi-step job)."""
        for name, u in [("", other.total)] + list(other.tasks.items()):
            target = self.total if name == "" else self.task(name)
            for k, v in asdict(u).items():
                setattr(target, k, getattr(target, k) + v)
        self.wall_s += other.wall_s
        self.backend = self.backend or other.backend
        self.model = self.model or other.model
