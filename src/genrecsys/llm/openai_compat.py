"""Any OpenAI-compatible chat-completions server (vLLM, llama.cpp server, Ollama, OpenAI).

Requests go out concurrently (``concurrency`` in flight); each is retried by the one retry
layer (:mod:`genrecsys.llm.retry`) and the HTTP client's own retries are off. A server
that is not on loopback is "remote" and must be opted into with ``allow_remote``.

A request's contract travels the way ``llm.structured_outputs`` says the server reads it:
``response_format`` (OpenAI's ``{"type": "json_schema", ...}``; JSON contracts only) or
``vllm`` (vLLM >= 0.12's ``structured_outputs``: ``json``, ``regex``, ``grammar`` or
``choice``). A server that refuses the field (HTTP 400/404/422 while it was sent) gets the
request once more without it; that answer is marked ``fallback`` and counted in the job
stats, and parsed as any unconstrained answer.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Sequence

from genrecsys.config import LLMConfig
from genrecsys.errors import GenrecsysError
from genrecsys.llm.backends import OnResult, approx_tokens, first_token_logprobs
from genrecsys.llm.contracts import Contract
from genrecsys.llm.retry import PermanentError, RetryPolicy, TransientError, call_with_retry, classify_http
from genrecsys.llm.types import Completion, Message, Request


class OpenAIBackend:
    name = "openai"
    remote = True  # prompts leave this process, even to a loopback server

    def __init__(self, cfg: LLMConfig, cache_dir: Path | None = None, policy: RetryPolicy | None = None):
        import httpx

        from genrecsys.llm.safety import is_loopback_url

        if not cfg.base_url.startswith(("http://", "https://")):
            raise GenrecsysError(f"llm.base_url must be an http(s) URL, got {cfg.base_url!r}")
        if not is_loopback_url(cfg.base_url) and not cfg.allow_remote:
            raise GenrecsysError(f"{cfg.base_url} is a remote server: prompts (item texts, user histories) would leave "
                                 "this machine; opt in with --allow-remote (llm.allow_remote: true)")
        self.cfg = cfg
        self.model_id = cfg.model or "default"
        self.max_context = cfg.max_context
        self.policy = policy or RetryPolicy(max_attempts=cfg.max_attempts)
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(cfg.timeout_s, connect=min(10.0, cfg.timeout_s)),
                                    limits=httpx.Limits(max_connections=cfg.concurrency),
                                    transport=httpx.HTTPTransport(retries=0))

    def close(self) -> None:
        self._client.close()

    @property
    def supports_contracts(self) -> bool:
        return self.cfg.structured_outputs != "off"

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return approx_tokens(messages)

    def contract_fields(self, c: Contract) -> dict[str, Any] | None:
        """The request-body fields that carry ``c`` to this server (None: it cannot carry it)."""
        mode = self.cfg.structured_outputs
        if mode == "vllm":
            return {"structured_outputs": {c.kind: c.to_dict()["spec"]}}  # vLLM names its fields as our kinds
        if mode == "response_format" and c.kind == "json":
            return {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": "answer", "schema": c.spec, "strict": True}}}
        return None

    def _body(self, r: Request, with_contract: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_id, "messages": list(r.messages), "max_tokens": r.params.max_tokens,
                                "temperature": r.params.temperature, "top_p": r.params.top_p, "seed": r.params.seed}
        if r.params.stop:
            body["stop"] = list(r.params.stop)
        if r.params.logprobs:
            body.update(logprobs=True, top_logprobs=r.params.logprobs)
        if with_contract and r.contract is not None:
            body.update(self.contract_fields(r.contract) or {})
        return body

    def _post_once(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            resp = self._client.post(self._url, content=json.dumps(body, ensure_ascii=False).encode("utf-8"))
        except httpx.TimeoutException as exc:
            raise TransientError(f"timeout: {type(exc).__name__}") from None
        except httpx.TransportError as exc:  # connection refused/reset, server closed mid-response
            raise TransientError(f"connection: {type(exc).__name__}: {exc}") from None
        if resp.status_code != 200:
            raise classify_http(resp.status_code, resp.headers, resp.text)
        try:
            data = resp.json()
            choice = data["choices"][0]
            choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            # a 200 whose body is not a completion is a server fault, not the prompt's
            raise TransientError(f"malformed response body: {resp.text[:120]!r}") from None
        return data

    def _one(self, r: Request) -> Completion:
        t0 = time.perf_counter()
        body = self._body(r)
        carried = r.contract is not None and self.contract_fields(r.contract) is not None
        fallback = r.contract is not None and not carried  # a contract this server's field cannot express
        try:
            data, attempts = call_with_retry(lambda: self._post_once(body), self.policy)
        except PermanentError as exc:
            if not (carried and exc.status in (400, 404, 422)):
                return Completion.failed(str(exc), self.name, self.model_id, attempts=getattr(exc, "attempts", 1),
                                         latency_s=time.perf_counter() - t0)
            plain = self._body(r, with_contract=False)  # the server refused the field: once more without it
            carried, fallback = False, True
            try:
                data, more = call_with_retry(lambda: self._post_once(plain), self.policy)
            except (TransientError, PermanentError) as exc2:
                return Completion.failed(str(exc2), self.name, self.model_id, latency_s=time.perf_counter() - t0,
                                         attempts=getattr(exc, "attempts", 1) + getattr(exc2, "attempts", 1),
                                         fallback=True)
            attempts = getattr(exc, "attempts", 1) + more
        except TransientError as exc:
            return Completion.failed(str(exc), self.name, self.model_id, attempts=getattr(exc, "attempts", 1),
                                     latency_s=time.perf_counter() - t0)
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        text = choice["message"]["content"] or ""
        finish = choice.get("finish_reason") or "stop"
        if finish not in ("stop", "length"):
            finish = "stop"  # tool_calls / content_filter / eos all end the answer
        return Completion(text=text, finish_reason=finish,
                          prompt_tokens=int(usage.get("prompt_tokens") or approx_tokens(r.messages)),
                          completion_tokens=int(usage.get("completion_tokens") or len(text.encode("utf-8")) // 3),
                          latency_s=time.perf_counter() - t0, backend=self.name, model=self.model_id, attempts=attempts,
                          constrained=carried, fallback=fallback,
                          top_logprobs=first_token_logprobs(choice) if r.params.logprobs else None)

    def generate(self, requests: Sequence[Request], on_result: OnResult | None = None) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)
        pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="llm-http")
        futures: dict[Future, int] = {}
        try:
            futures = {pool.submit(self._one, r): i for i, r in enumerate(requests)}
            pending = set(futures)
            while pending:
                # results are handed back on this thread, so on_result needs no locking
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    i = futures[f]
                    out[i] = f.result()
                    if on_result is not None:
                        on_result(i, out[i])
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return out  # type: ignore[return-value]

