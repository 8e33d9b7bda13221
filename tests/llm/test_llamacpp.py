"""llama.cpp backend on the embedded GGUF (needs the optional llama-cpp-python extra)."""
import pytest

from genrecsys.config import LLMConfig
from genrecsys.llm.backends import make_backend
from genrecsys.llm.types import Request, SamplingParams

pytestmark = pytest.mark.integration


def test_llamacpp_backend_answers_with_token_counts_and_length_cut(ml100k_cache):
    pytest.importorskip("llama_cpp")
    b = make_backend(LLMConfig(backend="llamacpp", threads=1), ml100k_cache)
    out = b.generate([Request.chat("Name a famous movie.", params=SamplingParams(max_tokens=24)),
                      Request.chat("Name a famous movie.", params=SamplingParams(max_tokens=2))])
    assert out[0].ok and out[0].text and out[0].prompt_tokens > 0 and 0 < out[0].completion_tokens <= 24
    assert out[1].finish_reason == "length" and out[1].completion_tokens == 2
    assert b.model_id.startswith("SmolLM2-135M-Instruct.Q4_1.gguf@")


def test_missing_llamacpp_is_a_clear_error(monkeypatch, ml100k_cache):
    import builtins

    from genrecsys.errors import GenrecsysError

    real_import = builtins.__import__

    def no_llama(name, *args, **kw):
        if name == "llama_cpp":
            raise ImportError("no llama_cpp")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_llama)
    with pytest.raises(GenrecsysError, match=r"genrecsys\[llamacpp\]"):
        make_backend(LLMConfig(backend="llamacpp"), ml100k_cache)


def test_llamacpp_answers_are_valid_under_json_grammar_and_choice_contracts(ml100k_cache):
    pytest.importorskip("llama_cpp")
    from genrecsys.llm.contracts import Contract

    b = make_backend(LLMConfig(backend="llamacpp", threads=1), ml100k_cache)
    contracts = [Contract("json", {"type": "object", "properties": {"genre": {"enum": ["Drama", "Comedy"]}},
                                   "required": ["genre"], "additionalProperties": False}),
                 Contract("grammar", 'root ::= "1. " t "\\n2. " t\nt ::= ("Heat (1995)" | "Toy Story (1995)")'),
                 Contract("choice", ["yes", "no"]),
                 Contract("regex", r"[a-c]+")]
    out = b.generate([Request.chat("Name a movie genre, then two movies.", params=SamplingParams(max_tokens=40),
                                   contract=c) for c in contracts])
    for c, comp in zip(contracts[:3], out[:3]):
        assert comp.ok and comp.constrained and not comp.fallback and c.check(comp.text) is None, comp.text
    assert out[3].ok and out[3].fallback and not out[3].constrained  # llama.cpp has no regex constraint
