"""Exactly-once bulk generation: cache lookup, backend calls committed as they finish,
bounded re-asks for answers that do not parse, and accounting.

``generate`` is the batch-first interface every feature uses::

    completions, stats = generate(requests, backend, cache)

Results come back in input order; every row ends as ok or with its error recorded, and
``stats.total.requests == stats.total.ok + stats.total.failed``. A rerun after a crash
sends only the prompts that have no committed answer; an unchanged rerun sends none.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from genrecsys.llm.accounting import JobStats, PriceTable
from genrecsys.llm.backends import Backend
from genrecsys.llm.cache import AnswerCache
from genrecsys.llm.contracts import Contract
from genrecsys.llm.templates import PromptTemplate
from genrecsys.llm.types import Completion, Request, SamplingParams

Parser = Callable[[str], Any]  # raises genrecsys.llm.parse.ParseError on a bad answer
TruncateRule = Callable[[dict[str, Any]], "dict[str, Any] | None"]

REASK = ("Your previous answer could not be used: {error}. Answer again, following the requested "
         "format exactly and writing nothing else.")


def _commit_meta(r: Request, backend: Backend) -> dict[str, Any]:
    return {"backend": backend.name, "model": backend.model_id, "template": r.template,
            "template_version": r.template_version, "task": r.task,
            "request": {"messages": list(r.messages), "params": r.params.to_dict(),
                        # kind and digest only: a catalog-sized grammar is not copied into every row
                        "contract": None if r.contract is None else {"kind": r.contract.kind,
                                                                      "digest": r.contract.digest}}}


def _answer(requests: Sequence[Request], backend: Backend, cache: AnswerCache | None, stats: JobStats,
            prices: PriceTable, tick: Callable[[int], None]) -> list[Completion]:
    """One round: cached answers, then one backend call per distinct uncached prompt."""
    keys = [r.cache_key(backend.name, backend.model_id) for r in requests]
    hits = cache.get_many(keys) if cache is not None else {}
    out: list[Completion | None] = [None] * len(requests)
    todo: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if k in hits:
            out[i] = replace(hits[k], cached=True)
        else:
            todo.setdefault(k, []).append(i)
    done_hits = sum(c is not None for c in out)
    if done_hits:
        tick(done_hits)
    order = list(todo)
    first = [todo[k][0] for k in order]

    def on_result(j: int, comp: Completion) -> None:
        key = order[j]
        if comp.ok and cache is not None:
            cache.put_many([(key, comp, _commit_meta(requests[first[j]], backend))])  # committed before anything else
        rows = todo[key]
        out[rows[0]] = comp
        for extra in rows[1:]:  # the same prompt twice in one job is paid once
            out[extra] = replace(comp, cached=True) if comp.ok else comp
        tick(len(rows))

    spent = 0.0
    if order:
        t0 = time.perf_counter()
        backend.generate([requests[i] for i in first], on_result=on_result)
        spent = time.perf_counter() - t0
    # The round's wall time, shared among the backend's answers by their tokens (a batch
    # decodes its rows together, so a row's own latency is its whole batch's).
    weight = sum(max(out[i].completion_tokens, 1) for i in first if out[i] is not None and not out[i].cached)
    for r, comp in zip(requests, out):
        assert comp is not None
        if comp.ok or comp.prompt_tokens or comp.completion_tokens:
            stats.total.add_call(comp, prices)
            stats.task(r.task).add_call(comp, prices)
    for i in first:
        comp = out[i]
        if comp is not None and not comp.cached and weight:
            share = spent * max(comp.completion_tokens, 1) / weight
            stats.total.add_time(comp, share)
            stats.task(requests[i].task).add_time(comp, share)
    return out  # type: ignore[return-value]


def generate(requests: Sequence[Request | Completion], backend: Backend, cache: AnswerCache | None = None, *,
             parser: Parser | None = None, max_reasks: int = 1, prices: PriceTable | None = None,
             progress: bool = False, desc: str = "llm") -> tuple[list[Completion], JobStats]:
    """Answer ``requests`` in order. A :class:`Completion` in the input is a row that already
    failed upstream (e.g. its prompt could not be rendered); it is passed through and counted.

    With ``parser``, each answer is parsed; a :class:`~genrecsys.llm.parse.ParseError` leads to
    up to ``max_reasks`` follow-up prompts (the answer plus what was wrong), themselves cached.
    The final completion keeps the raw text and, when parsing succeeded, ``parsed``.
    """
    from genrecsys.llm.parse import ParseError

    prices = prices or PriceTable()
    stats = JobStats(backend=backend.name, model=backend.model_id)
    t0 = time.perf_counter()
    final: list[Completion | None] = [c if isinstance(c, Completion) else None for c in requests]
    bar = _progress(len(requests), progress, desc)
    if any(c is not None for c in final):
        bar.update(sum(c is not None for c in final))
    rows = [i for i, c in enumerate(final) if c is None]
    current: dict[int, Request] = {i: requests[i] for i in rows}  # type: ignore[misc]
    round_no = 0
    try:
        while rows:
            answers = _answer([current[i] for i in rows], backend, cache, stats, prices,
                              tick=(lambda n: bar.update(n)) if round_no == 0 else (lambda n: None))
            retry_rows: list[int] = []
            for i, comp in zip(rows, answers):
                if not comp.ok or parser is None:
                    final[i] = comp
                    continue
                try:
                    final[i] = replace(comp, parsed=parser(comp.text))
                except ParseError as exc:
                    if round_no < max_reasks:
                        req = current[i]
                        msgs = req.messages + ({"role": "assistant", "content": comp.text},
                                               {"role": "user", "content": REASK.format(error=exc)})
                        current[i] = replace(req, messages=msgs)
                        retry_rows.append(i)
                        stats.total.reasks += 1
                        stats.task(req.task).reasks += 1
                    else:
                        final[i] = replace(comp, error=f"parse: {exc}")
            rows = retry_rows
            round_no += 1
    finally:
        bar.close()
        stats.wall_s = time.perf_counter() - t0
    for r, comp in zip(requests, final):
        assert comp is not None
        task = r.task if isinstance(r, Request) else "default"
        stats.total.add_row(comp, prices)
        stats.task(task).add_row(comp, prices)
        if isinstance(r, Request) and r.contract is not None and comp.ok and r.contract.check(comp.text) is not None:
            stats.count(task, contract_violations=1)
    return final, stats  # type: ignore[return-value]


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="req", dynamic_ncols=True, leave=False)


# ----------------------------------------------------------------------------- rendering
def keep_recent(variable: str, recent_first: bool = True, min_items: int = 1) -> TruncateRule:
    """A truncation rule: drop the oldest item of list ``variable`` until the prompt fits.

    >>> rule = keep_recent("history")
    >>> rule({"history": ["newest", "older", "oldest"]})
    {'history': ['newest', 'older']}
    >>> rule({"history": ["only"]}) is None
    True
    """
    def rule(values: dict[str, Any]) -> dict[str, Any] | None:
        items = list(values.get(variable) or [])
        if len(items) <= min_items:
            return None
        return {**values, variable: items[:-1] if recent_first else items[1:]}

    return rule


def render_requests(template: PromptTemplate, rows: Sequence[Mapping[str, Any]], backend: Backend, *,
                    params: SamplingParams | None = None, task: str | None = None, truncate: TruncateRule | None = None,
                    max_prompt_tokens: int | None = None, pseudonym_key: bytes | None = None,
                    contract: Contract | None = None, contracts: bool = True, fence: bool = True,
                    stats: JobStats | None = None) -> list[Request | Completion]:
    """Render each row's variables into a request, counting tokens before anything is sent.

    Each request carries ``contract`` if given, else the template's own contract rendered
    for its row; ``contracts=False`` sends none (the unconstrained side of a comparison);
    ``fence=False`` drops the markers of the ``data`` filter (the prompt-injection audit's ablation).

    A prompt over ``max_prompt_tokens`` (default: the backend's context minus
    ``params.max_tokens``) is shrunk with ``truncate`` until it fits; a row that cannot be made
    to fit, or cannot be rendered, becomes a failed completion, not a failed job.
    """
    from genrecsys.errors import GenrecsysError

    params = params or SamplingParams()
    if max_prompt_tokens is None and backend.max_context:
        max_prompt_tokens = backend.max_context - params.max_tokens
    key = pseudonym_key if backend.remote else None
    out: list[Request | Completion] = []
    for row in rows:
        values = dict(row)
        try:
            while True:
                msgs = template.render(values, pseudonym_key=key, fence=fence)
                n = backend.count_tokens(msgs) if max_prompt_tokens else 0
                if not max_prompt_tokens or n <= max_prompt_tokens:
                    break
                smaller = truncate(values) if truncate else None
                if smaller is None:
                    raise GenrecsysError(f"prompt has {n} tokens, over the limit of {max_prompt_tokens}"
                                         + ("" if truncate else " (no truncation rule given)"))
                values = smaller
                if stats is not None:
                    stats.total.overflow_truncated += 1
            row_contract = (contract or template.contract_for(values)) if contracts else None
            out.append(Request(messages=msgs, params=params, contract=row_contract, template=template.name,
                               template_version=template.version, task=task or template.name))
        except GenrecsysError as exc:
            out.append(Completion.failed(str(exc), backend.name, backend.model_id))
    return out


def default_cache_path(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "llm" / "cache.sqlite"
