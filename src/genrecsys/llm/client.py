"""The object most callers hold: a backend, its cache, prices and running totals.

>>> from genrecsys.config import LLMConfig
>>> llm = LLM(LLMConfig(), backend=EchoBackend(), cache_path=":memory:")
>>> [c.text for c in llm.generate([Request.chat("hello"), Request.chat("bye")])]
['echo: hello', 'echo: bye']
>>> llm.stats.total.backend_calls
2
"""
from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

from genrecsys.config import LLMConfig
from genrecsys.errors import GenrecsysError
from genrecsys.llm.accounting import JobStats, PriceTable
from genrecsys.llm.backends import Backend, BackendFactory, OnResult, make_backend
from genrecsys.llm.cache import LLMCache
from genrecsys.llm.contracts import Contract
from genrecsys.llm.job import Parser, TruncateRule, default_cache_path, generate, render_requests
from genrecsys.llm.templates import PromptTemplate, load_template
from genrecsys.llm.types import Completion, Message, Request, SamplingParams


class LLM:
    def __init__(self, cfg: LLMConfig | None = None, cache_dir: str | Path | None = None, *,
                 backend: Backend | None = None, cache_path: str | Path | None = None, progress: bool = False):
        from genrecsys.data.movielens import default_cache_dir

        self.cfg = cfg or LLMConfig()
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.backend = backend or make_backend(self.cfg, self.cache_dir)
        # What a Ray actor calls to get its own backend (executor "ray"): built from the
        # config there, or a pickled copy of the instance this facade was handed.
        self.backend_factory: BackendFactory = (partial(make_backend, self.cfg, self.cache_dir) if backend is None
                                                else partial(_same, backend))
        path = cache_path or self.cfg.cache or default_cache_path(self.cache_dir)
        if str(path) == ":memory:":  # a throwaway cache (doctests, dry runs)
            path = Path(tempfile.mkdtemp()) / "cache.sqlite"
        self.cache = LLMCache(path)
        self.prices = PriceTable.from_dict(self.cfg.prices)
        self.progress = progress
        self.stats = JobStats(backend=self.backend.name, model=self.backend.model_id)
        self._key: bytes | None = None

    @property
    def pseudonym_key(self) -> bytes:
        if self._key is None:
            from genrecsys.llm.safety import load_or_create_key

            self._key = load_or_create_key(self.cache_dir / "llm" / "pseudonym.key")
        return self._key

    @property
    def contracts_on(self) -> bool:
        """Whether requests carry output contracts: on in config and enforceable by the backend."""
        return bool(self.cfg.contracts and getattr(self.backend, "supports_contracts", False))

    def template(self, name: str | PromptTemplate) -> PromptTemplate:
        return name if isinstance(name, PromptTemplate) else load_template(name, self.cfg.templates_dir)

    def generate(self, requests: Sequence[Request | Completion], *, parser: Parser | None = None,
                 desc: str = "llm") -> list[Completion]:
        """Answer ``requests`` in input order through the cache; adds to ``self.stats``.

        With ``cfg.executor == "ray"`` the same job runs on a pool of Ray actors
        (:func:`genrecsys.llm.distributed.generate_on_ray`) sharing this cache file.
        """
        if not getattr(self.backend, "supports_scoring", False) and any(
                isinstance(r, Request) and r.params.score_choices for r in requests):
            raise GenrecsysError(f"scoring choices (score_choices) needs the local backend; "
                                 f"llm.backend is {self.backend.name}")
        if self.cfg.executor == "ray":
            from genrecsys.llm.distributed import generate_on_ray

            out, stats = generate_on_ray(requests, self.cfg, self.cache.path, parser,
                                         backend_factory=self.backend_factory, prices=self.prices,
                                         progress=self.progress)
        else:
            out, stats = generate(requests, self.backend, self.cache, parser=parser, max_reasks=self.cfg.max_reasks,
                                  prices=self.prices, progress=self.progress, desc=desc)
        self.stats.merge(stats)
        self.last_stats = stats
        return out

    def run_template(self, template: str | PromptTemplate, rows: Sequence[Mapping[str, Any]], *,
                     params: SamplingParams | None = None, parser: Parser | None = None,
                     truncate: TruncateRule | None = None, task: str | None = None,
                     contract: Contract | None = None, contracts: bool = True,
                     fence: bool = True) -> list[Completion]:
        """Render ``template`` for each row of variables and answer them (one row, one completion).

        Rows carry ``contract`` if given, else the template's own, whenever
        :attr:`contracts_on` (config ``contracts`` and a backend that can enforce them) and
        ``contracts``; ``fence=False`` renders the ``data`` filter without its markers (the
        two switches of the prompt-injection audit, `genrecsys.stages.trust`)."""
        t = self.template(template)
        counter = JobStats()
        reqs = render_requests(t, rows, self.backend, params=params, task=task, truncate=truncate, contract=contract,
                               contracts=contracts and self.contracts_on, fence=fence,
                               pseudonym_key=self.pseudonym_key if self.backend.remote else None, stats=counter)
        out = self.generate(reqs, parser=parser, desc=task or t.name)
        self.stats.total.overflow_truncated += counter.total.overflow_truncated
        self.last_stats.total.overflow_truncated += counter.total.overflow_truncated
        return out

    def close(self) -> None:
        self.cache.close()
        closer = getattr(self.backend, "close", None)
        if closer:
            closer()


def _same(backend: Backend) -> Backend:
    return backend


class EchoBackend:
    """A deterministic in-process backend for examples and dry runs: answers "echo: <last
    user message>". Token counts are whitespace words, so accounting is predictable."""

    name = "echo"
    remote = False
    max_context: int | None = None

    def __init__(self, model_id: str = "echo-1"):
        self.model_id = model_id
        self.calls = 0

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, requests: Sequence[Request], on_result: OnResult | None = None) -> list[Completion]:
        out = []
        for i, r in enumerate(requests):
            self.calls += 1
            text = "echo: " + r.messages[-1]["content"]
            words = text.split()
            finish = "length" if len(words) > r.params.max_tokens else "stop"
            comp = Completion(text=" ".join(words[:r.params.max_tokens]), finish_reason=finish,
                              prompt_tokens=self.count_tokens(r.messages),
                              completion_tokens=min(len(words), r.params.max_tokens), backend=self.name, model=self.model_id)
            out.append(comp)
            if on_result:
                on_result(i, comp)
        return out
