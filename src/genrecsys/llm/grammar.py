"""Grammar engines for the local backend: a contract becomes a mask on the next token.

Two maintained libraries are wired in behind one small interface, so they can be measured
side by side (``benchmarks/llm_structured.py``) and picked with ``llm.grammar_engine``:

- ``xgrammar`` (the default): compiles JSON Schema / regex / GBNF against the tokenizer
  once, then fills a 32-bit-per-word token bitmask per step;
- ``llguidance``: the same through its Rust matcher (GBNF goes through its Lark converter).

Both fill the same bitmask layout (bit ``j`` of word ``w`` allows token ``32 w + j``), so one
logits processor (:class:`ContractProcessor`) serves both, row by row: a batch may mix
contracted rows with free ones, left padding and the KV cache are untouched (the processor
only sees the last sampled token of each row), and the mask is applied before temperature
and top-p, so greedy and sampled decoding both stay inside the contract.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from genrecsys.errors import GenrecsysError
from genrecsys.registry import Registry

if TYPE_CHECKING:  # contracts imports this module to check answers: types only here
    from genrecsys.llm.contracts import Contract

_LOG_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")

ENGINES = Registry("grammar engine")
ENGINES.add("xgrammar", "genrecsys.llm.grammar:XGrammarEngine")
ENGINES.add("llguidance", "genrecsys.llm.grammar:LLGuidanceEngine")


class Matcher(Protocol):
    """One answer's position in its grammar."""

    def accept(self, token: int) -> bool: ...

    def fill(self, bitmask, row: int) -> None: ...


class Engine(Protocol):
    name: str
    vocab_size: int

    def compile(self, contract: Contract) -> Any: ...

    def matcher(self, compiled: Any) -> Matcher: ...


def make_engine(name: str, tokenizer, vocab_size: int, stop_ids: Sequence[int]) -> Engine:
    """Engine ``name`` for this tokenizer; ``stop_ids`` end an answer once the grammar is complete."""
    try:
        return ENGINES.get(name)(tokenizer, vocab_size, list(stop_ids))
    except ImportError as exc:
        raise GenrecsysError(f"grammar engine {name!r} is not installed ({exc.name}): pip install {name}") from None


class _Compiled:
    """Compiled grammars by contract digest: a job compiles each distinct contract once."""

    def __init__(self, engine_name: str):
        self.engine_name = engine_name
        self._cache: dict[str, Any] = {}

    def get(self, contract: Contract, build) -> Any:
        key = contract.digest
        if key not in self._cache:
            try:
                self._cache[key] = build()
            except GenrecsysError:
                raise
            except Exception as exc:  # the libraries raise RuntimeError / ValueError with the reason
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                msg = _LOG_PREFIX.sub("", msg)  # "[14:55:28] /project/cpp/x.cc:94: " in front of xgrammar's reason
                raise GenrecsysError(f"{contract.kind} contract does not compile with {self.engine_name}: {msg}") from None
        return self._cache[key]


# ----------------------------------------------------------------------------- xgrammar
class _XMatcher:
    def __init__(self, matcher):
        self._m = matcher

    def accept(self, token: int) -> bool:
        return bool(self._m.accept_token(int(token)))

    def fill(self, bitmask, row: int) -> None:
        self._m.fill_next_token_bitmask(bitmask, row)


class XGrammarEngine:
    name = "xgrammar"

    def __init__(self, tokenizer, vocab_size: int, stop_ids: list[int]):
        import xgrammar as xgr

        self._xgr = xgr
        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        self._compiler = xgr.GrammarCompiler(info)
        self._compiled = _Compiled(self.name)

    def compile(self, contract: Contract):
        def build():
            if contract.kind == "json":
                # Compact JSON: with free whitespace small models pad answers with newlines until max_tokens.
                return self._compiler.compile_json_schema(json.dumps(contract.spec), any_whitespace=False)
            if contract.kind == "regex":
                return self._compiler.compile_regex(contract.spec)
            return self._compiler.compile_grammar(contract.gbnf())

        return self._compiled.get(contract, build)

    def matcher(self, compiled) -> Matcher:
        return _XMatcher(self._xgr.GrammarMatcher(compiled))


# ----------------------------------------------------------------------------- llguidance
class _LLMatcher:
    def __init__(self, matcher):
        self._m = matcher

    def accept(self, token: int) -> bool:
        return bool(self._m.consume_token(int(token)))

    def fill(self, bitmask, row: int) -> None:
        from llguidance.torch import fill_next_token_bitmask

        fill_next_token_bitmask(self._m, bitmask, row)


class LLGuidanceEngine:
    name = "llguidance"

    def __init__(self, tokenizer, vocab_size: int, stop_ids: list[int]):
        import llguidance
        import llguidance.hf

        self._llg = llguidance
        self.vocab_size = vocab_size
        self._tok = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=stop_ids[0] if stop_ids else None)
        self._compiled = _Compiled(self.name)

    def compile(self, contract: Contract):
        def build():
            M = self._llg.LLMatcher
            if contract.kind == "json":
                grammar = M.grammar_from_json_schema(contract.spec, defaults={"whitespace_flexible": False})
            elif contract.kind == "regex":
                grammar = M.grammar_from_regex(contract.spec)
            else:
                from llguidance.gbnf_to_lark import gbnf_to_lark

                grammar = M.grammar_from_lark(gbnf_to_lark(contract.gbnf()))
            probe = M(self._tok, grammar)  # compiling is building a matcher; errors are reported, not raised
            if probe.is_error():
                raise GenrecsysError(f"{contract.kind} contract does not compile with llguidance: {probe.get_error()}")
            return grammar

        return self._compiled.get(contract, build)

    def matcher(self, compiled) -> Matcher:
        m = self._llg.LLMatcher(self._tok, compiled)
        if m.is_error():
            raise GenrecsysError(f"llguidance: {m.get_error()}")
        return _LLMatcher(m)


# ----------------------------------------------------------------------------- the processor
def allocate_bitmask(batch: int, vocab_size: int):
    import torch

    return torch.full((batch, (vocab_size + 31) // 32), -1, dtype=torch.int32)


def apply_bitmask(scores, bitmask) -> None:
    """Set ``scores`` (B, V) to -inf where ``bitmask`` (B, ceil(V/32)) int32 has a 0 bit."""
    import torch

    batch, vocab = scores.shape
    shifts = torch.arange(32, dtype=torch.int32)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1  # (B, W, 32): bit j of word w is token 32 w + j
    allowed = bits.reshape(batch, -1)[:, :vocab].to(torch.bool).to(scores.device)
    scores.masked_fill_(~allowed, float("-inf"))


class ContractProcessor:
    """A transformers logits processor holding one matcher per batch row (None: a free row).

    Used once per ``generate`` call. A row is finished once it sampled a stop token (the
    engines differ on what "done" means before that, so the processor tracks it itself);
    ``rejected[i]`` turns True if row ``i`` ever sampled a token its matcher refused (not
    expected, since the mask forbids it; counted, not raised).
    """

    def __init__(self, matchers: Sequence[Matcher | None], vocab_size: int, stop_ids: Sequence[int]):
        self.matchers = list(matchers)
        self.stop_ids = set(int(t) for t in stop_ids)
        self.bitmask = allocate_bitmask(len(self.matchers), vocab_size)
        self.rejected = [False] * len(self.matchers)
        self.finished = [False] * len(self.matchers)
        self._started = False

    def _live(self, i: int) -> bool:
        return self.matchers[i] is not None and not self.finished[i] and not self.rejected[i]

    def __call__(self, input_ids, scores):
        if self._started:
            last = input_ids[:, -1].tolist()
            for i, m in enumerate(self.matchers):
                if not self._live(i):
                    continue
                if not m.accept(last[i]):
                    self.rejected[i] = True
                elif last[i] in self.stop_ids:
                    self.finished[i] = True
        self._started = True
        self.bitmask.fill_(-1)  # free, finished and refused rows: everything allowed (HF pads finished rows)
        for i, m in enumerate(self.matchers):
            if self._live(i):
                m.fill(self.bitmask, i)
        apply_bitmask(scores, self.bitmask)
        return scores


# ----------------------------------------------------------------------------- checking
@lru_cache(maxsize=1)
def _byte_compiler():
    """xgrammar's compiler over a tokenizer of the 256 single bytes: grammars without a model."""
    import xgrammar as xgr

    return xgr.GrammarCompiler(xgr.TokenizerInfo([bytes([b]) for b in range(256)], stop_token_ids=[]))


@lru_cache(maxsize=16)
def _byte_grammar(gbnf: str):
    try:
        return _byte_compiler().compile_grammar(gbnf)
    except Exception as exc:
        raise GenrecsysError(f"grammar contract does not compile: {str(exc).strip().splitlines()[0]}") from None


def accepts(contract: Contract, text: str) -> bool:
    """Whether a grammar derives ``text`` exactly (byte by byte, through xgrammar's matcher)."""
    import xgrammar as xgr

    gbnf = contract.gbnf()
    if gbnf is None:
        return contract.check(text) is None
    m = xgr.GrammarMatcher(_byte_grammar(gbnf), terminate_without_stop_token=True)
    if not all(m.accept_token(b) for b in text.encode("utf-8")):
        return False
    return bool(m.is_terminated() or m.is_completed())
