"""The backend protocol, and the registry that builds a backend from :class:`LLMConfig`.

A backend answers a batch of requests in input order and never raises for one bad row:
each row ends as a completion or as a completion carrying its error. ``on_result`` is
called as each row finishes so the caller can commit it at once (that is what makes a
killed job resumable without paying twice).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from genrecsys.config import LLMConfig
from genrecsys.llm.types import Completion, Message, Request
from genrecsys.registry import Registry

OnResult = Callable[[int, Completion], None]


@runtime_checkable
class Backend(Protocol):
    name: str  # "local" | "openai" | "llamacpp"
    model_id: str  # identifies the weights: part of every cache key
    remote: bool  # prompts leave this process (ids are pseudonymized first)
    max_context: int | None  # tokens; None when unknown

    def count_tokens(self, messages: Sequence[Message]) -> int: ...

    def generate(self, requests: Sequence[Request], on_result: OnResult | None = None) -> list[Completion]: ...


BackendFactory = Callable[[], Backend]  # builds a backend where it will run (e.g. inside a Ray actor)

BACKENDS = Registry("LLM backend")
BACKENDS.add("local", "genrecsys.llm.local:LocalBackend")
BACKENDS.add("openai", "genrecsys.llm.openai_compat:OpenAIBackend")
BACKENDS.add("llamacpp", "genrecsys.llm.llamacpp:LlamaCppBackend")


def make_backend(cfg: LLMConfig, cache_dir: str | Path | None = None) -> Backend:
    """Build the backend ``cfg.backend`` names.

    ``cache_dir`` holds downloaded/converted model files for the embedded defaults.
    """
    from genrecsys.data.movielens import default_cache_dir

    return BACKENDS.get(cfg.backend)(cfg, Path(cache_dir) if cache_dir else default_cache_dir())


def approx_tokens(messages: Sequence[Message]) -> int:
    """A deliberately high token estimate for backends whose tokenizer is unknown here.

    BPE tokenizers average about 4 bytes of English per token; counting one token per 3 bytes
    (plus chat-format overhead) errs on the long side, so an over-long prompt is caught
    before a server rejects it.

    >>> approx_tokens([{"role": "user", "content": "x" * 30}])
    16
    """
    return sum(len(m["content"].encode("utf-8")) // 3 + 6 for m in messages)


def first_token_logprobs(choice: dict[str, Any]) -> dict[str, float] | None:
    """An OpenAI-format choice's ``logprobs.content[0].top_logprobs`` as token -> log-probability
    (None when the server sent none). llama-cpp-python answers in the same format.

    >>> first_token_logprobs({"logprobs": {"content": [{"token": "B", "logprob": -0.1,
    ...     "top_logprobs": [{"token": "B", "logprob": -0.1}, {"token": "A", "logprob": -2.5}]}]}})
    {'B': -0.1, 'A': -2.5}
    """
    try:
        tops = (choice.get("logprobs") or {})["content"][0]["top_logprobs"]
        out: dict[str, float] = {}
        for t in tops:
            out.setdefault(str(t["token"]), float(t["logprob"]))
        return out
    except (KeyError, IndexError, TypeError, ValueError):
        return None
