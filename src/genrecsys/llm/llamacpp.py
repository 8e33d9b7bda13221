"""Optional llama.cpp backend (``pip install genrecsys[llamacpp]``): the same GGUF file,
run by llama-cpp-python, one prompt at a time (single stream).

Contracts go through llama.cpp's own grammar sampler: a JSON contract as
``response_format={"type": "json_object", "schema": ...}`` (llama-cpp-python turns the
schema into a GBNF grammar), a grammar or choice contract as a GBNF grammar. llama.cpp has
no regular-expression constraint, so a regex contract is answered unconstrained and marked
``fallback`` (counted in the job stats)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from genrecsys.config import LLMConfig
from genrecsys.errors import GenrecsysError
from genrecsys.llm.backends import OnResult, first_token_logprobs
from genrecsys.llm.types import Completion, Message, Request


class LlamaCppBackend:
    name = "llamacpp"
    remote = False
    supports_contracts = True

    def __init__(self, cfg: LLMConfig, cache_dir: Path):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise GenrecsysError("the llamacpp backend needs llama-cpp-python: pip install 'genrecsys[llamacpp]'") from None
        from genrecsys.assets import embedded_llm_gguf
        from genrecsys.llm.local import file_sha256

        path = Path(cfg.model) if cfg.model else embedded_llm_gguf(cache_dir)
        if not path.is_file() or path.suffix != ".gguf":
            raise GenrecsysError(f"the llamacpp backend needs a .gguf file, got {path}")
        self.cfg = cfg
        self.model_id = f"{path.name}@{file_sha256(path)[:12]}"
        self.max_context = cfg.max_context or 2048
        self._llm = Llama(model_path=str(path), n_ctx=self.max_context, n_threads=cfg.threads, verbose=False)
        self._grammars: dict[str, Any] = {}

    def contract_kwargs(self, r: Request) -> dict[str, Any]:
        """``create_chat_completion`` arguments enforcing the request's contract ({}: none/unsupported)."""
        c = r.contract
        if c is None:
            return {}
        if c.kind == "json":
            return {"response_format": {"type": "json_object", "schema": c.spec}}
        gbnf = c.gbnf()
        if gbnf is None:
            return {}
        from llama_cpp import LlamaGrammar

        key = c.digest
        if key not in self._grammars:  # parsing a catalog-sized grammar once per job, not per row
            self._grammars[key] = LlamaGrammar.from_string(gbnf, verbose=False)
        return {"grammar": self._grammars[key]}

    def count_tokens(self, messages: Sequence[Message]) -> int:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) + 3

    def generate(self, requests: Sequence[Request], on_result: OnResult | None = None) -> list[Completion]:
        out = []
        for i, r in enumerate(requests):
            t0 = time.perf_counter()
            extra, carried = self.contract_kwargs(r), False
            try:
                carried = bool(extra)
                res = self._llm.create_chat_completion(
                    messages=list(r.messages), max_tokens=r.params.max_tokens, temperature=r.params.temperature,
                    top_p=r.params.top_p, seed=r.params.seed, stop=list(r.params.stop) or None,
                    **({"logprobs": True, "top_logprobs": r.params.logprobs} if r.params.logprobs else {}), **extra)
                choice, usage = res["choices"][0], res.get("usage") or {}
                comp = Completion(text=choice["message"]["content"] or "",
                                  finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                                  prompt_tokens=int(usage.get("prompt_tokens", 0)),
                                  completion_tokens=int(usage.get("completion_tokens", 0)),
                                  latency_s=time.perf_counter() - t0, backend=self.name, model=self.model_id,
                                  constrained=carried, fallback=r.contract is not None and not carried,
                                  top_logprobs=first_token_logprobs(choice) if r.params.logprobs else None)
            except Exception as exc:  # a bad row must not end the job
                comp = Completion.failed(f"{type(exc).__name__}: {exc}", self.name, self.model_id)
            out.append(comp)
            if on_result is not None:
                on_result(i, comp)
        return out
