"""Requests and completions: the two value types every backend speaks.

A request is chat messages + sampling parameters (+ an optional output contract,
:class:`~genrecsys.llm.contracts.Contract`); a completion
is what came back, or the recorded error of a row that could not be answered. Both are
plain dataclasses that round-trip through JSON (the cache stores JSON, never pickle).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genrecsys.llm.contracts import Contract

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}

FINISH_REASONS = ("stop", "length", "error")


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings. ``temperature == 0`` means greedy (deterministic) decoding.

    >>> SamplingParams(max_tokens=64).greedy
    True
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    logprobs: int = 0  # > 0: also return this many most likely first tokens with their log-probabilities
    score_choices: bool = False  # no decoding: the log-likelihood of every choice of the request's choice contract

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.logprobs <= 20:  # OpenAI's top_logprobs limit
            raise ValueError(f"logprobs must be in [0, 20], got {self.logprobs}")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON; ``logprobs`` and ``score_choices`` only when asked for, so the cache keys of
        requests without it (and the answers cached under them) are those of earlier versions."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        for name in ("logprobs", "score_choices"):
            if not d[name]:
                del d[name]
        return d


@dataclass(frozen=True)
class Request:
    """One prompt. ``template``/``template_version`` name where the messages came from;
    they are part of the cache key so that editing a template invalidates its results."""

    messages: tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    contract: "Contract | None" = None
    template: str | None = None
    template_version: str | None = None
    task: str = "default"

    def __post_init__(self) -> None:
        msgs = tuple({"role": str(m["role"]), "content": str(m["content"])} for m in self.messages)
        if not msgs:
            raise ValueError("a request needs at least one message")
        for m in msgs:
            if m["role"] not in ("system", "user", "assistant"):
                raise ValueError(f"unknown message role {m['role']!r}")
        object.__setattr__(self, "messages", msgs)

    @classmethod
    def chat(cls, user: str, system: str | None = None, **kw: Any) -> "Request":
        """A request from a user message and an optional system message.

        >>> Request.chat("hi").messages
        ({'role': 'user', 'content': 'hi'},)
        """
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        return cls(messages=tuple(msgs), **kw)

    def cache_key(self, backend: str, model: str) -> str:
        """Hash of everything that determines the answer. ``task`` is bookkeeping, not input.

        The contract enters the key only when there is one, so the keys of uncontracted
        requests (and the answers cached under them) are those of earlier versions."""
        payload = {
            "backend": backend, "model": model,
            "template": self.template, "template_version": self.template_version,
            "messages": list(self.messages), "params": self.params.to_dict(), "schema": None,
        }
        if self.contract is not None:
            payload["contract"] = {"kind": self.contract.kind, "digest": self.contract.digest}
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class Completion:
    """The outcome of one request. ``error`` is set (and ``finish_reason == "error"``) for a
    row that could not be answered; ``finish_reason == "length"`` marks a truncated answer."""

    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    backend: str = ""
    model: str = ""
    error: str | None = None
    cached: bool = False
    attempts: int = 1
    parsed: Any = None
    constrained: bool = False  # decoded under the request's contract (False: no contract, or the backend fell back)
    fallback: bool = False  # the server refused the contract and the request was sent again without it
    # SamplingParams.logprobs > 0: the most likely first tokens of the answer -> log-probability,
    # after the contract's mask where the backend applied it (None: not asked, or not returned)
    top_logprobs: dict[str, float] | None = None
    # SamplingParams.score_choices: each choice -> log P(choice | prompt), summed over its tokens
    choice_logprobs: dict[str, float] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Completion":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def failed(cls, error: str, backend: str = "", model: str = "", **kw: Any) -> "Completion":
        return cls(text="", finish_reason="error", error=error, backend=backend, model=model, **kw)
