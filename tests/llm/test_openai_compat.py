"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1."""
import json

import pytest

from genrecsys.config import LLMConfig
from genrecsys.errors import GenrecsysError
from genrecsys.llm.contracts import Contract
from genrecsys.llm.openai_compat import OpenAIBackend
from genrecsys.llm.retry import RetryPolicy
from genrecsys.llm.types import Request, SamplingParams
from openai_server import answer_for


def test_results_come_back_in_input_order_despite_slow_rows(backend):
    prompts = ["a MODE=slow0.3", "b", "c MODE=slow0.1", "d"]
    out = backend.generate([Request.chat(p) for p in prompts])
    assert [c.text for c in out] == [answer_for(p) for p in prompts]
    assert all(c.ok and c.backend == "openai" and c.model == "test-model" for c in out)


def test_429_with_retry_after_is_retried_until_it_succeeds(backend, server):
    (c,) = backend.generate([Request.chat("p MODE=429x2")])
    assert c.ok and c.attempts == 3
    assert server.attempts["p MODE=429x2"] == 3


@pytest.mark.parametrize("mode", ["500x2", "503x1", "drop1"])
def test_server_errors_and_dropped_connections_are_retried(backend, server, mode):
    (c,) = backend.generate([Request.chat(f"p MODE={mode}")])
    assert c.ok, c.error
    assert c.attempts > 1


@pytest.mark.parametrize("mode", ["400", "401", "quota"])
def test_client_errors_and_quota_fail_the_row_without_retrying(backend, server, mode):
    out = backend.generate([Request.chat(f"p MODE={mode}"), Request.chat("fine")])
    assert not out[0].ok and out[0].finish_reason == "error"
    assert server.attempts[f"p MODE={mode}"] == 1
    assert out[1].ok


def test_retries_are_bounded_and_the_last_error_is_recorded(server):
    b = OpenAIBackend(LLMConfig(backend="openai", base_url=server.url, timeout_s=5),
                      policy=RetryPolicy(max_attempts=2, base_s=0.01))
    (c,) = b.generate([Request.chat("p MODE=500x9")])
    assert not c.ok and "HTTP 500" in c.error and c.attempts == 2
    assert server.attempts["p MODE=500x9"] == 2


def test_slow_server_beyond_timeout_is_a_recorded_error(server):
    b = OpenAIBackend(LLMConfig(backend="openai", base_url=server.url, timeout_s=0.2),
                      policy=RetryPolicy(max_attempts=2, base_s=0.01))
    (c,) = b.generate([Request.chat("p MODE=slow1")])
    assert not c.ok and "timeout" in c.error


def test_truncated_answer_reports_finish_reason_length(backend):
    (c,) = backend.generate([Request.chat("p MODE=truncjson")])
    assert c.ok and c.finish_reason == "length"


def test_request_body_carries_sampling_params_and_the_json_contract_as_response_format(backend, server):
    r = Request.chat("p", params=SamplingParams(max_tokens=7, temperature=0.5, seed=3, stop=("END",)),
                     contract=Contract("json", {"type": "object"}))
    (c,) = backend.generate([r])
    body = server.bodies[-1]
    assert body["max_tokens"] == 7 and body["temperature"] == 0.5 and body["seed"] == 3 and body["stop"] == ["END"]
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}}
    assert "structured_outputs" not in body
    assert c.ok and c.constrained and not c.fallback


@pytest.mark.parametrize("contract,field", [
    (Contract("json", {"type": "object"}), {"json": {"type": "object"}}),
    (Contract("regex", r"\d+"), {"regex": r"\d+"}),
    (Contract("grammar", 'root ::= "a"'), {"grammar": 'root ::= "a"'}),
    (Contract("choice", ["yes", "no"]), {"choice": ["yes", "no"]}),
])
def test_vllm_mode_sends_every_contract_kind_as_structured_outputs(server, contract, field):
    b = OpenAIBackend(LLMConfig(backend="openai", base_url=server.url, structured_outputs="vllm", timeout_s=5))
    (c,) = b.generate([Request.chat("p", contract=contract)])
    body = server.bodies[-1]
    assert body["structured_outputs"] == field and "response_format" not in body
    assert c.ok and c.constrained and not c.fallback


def test_a_server_that_refuses_the_field_is_asked_once_more_without_it(backend, server):
    (c,) = backend.generate([Request.chat("p MODE=nostructured", contract=Contract("json", {"type": "object"}))])
    first, second = server.bodies[-2:]
    assert "response_format" in first and "response_format" not in second
    assert c.ok and c.fallback and not c.constrained and server.attempts["p MODE=nostructured"] == 2


def test_a_contract_the_field_cannot_express_is_sent_without_it_and_marked(backend, server):
    (c,) = backend.generate([Request.chat("p", contract=Contract("choice", ["a", "b"]))])
    assert "response_format" not in server.bodies[-1] and "structured_outputs" not in server.bodies[-1]
    assert c.ok and c.fallback and not c.constrained


def test_structured_outputs_off_means_no_contracts():
    b = OpenAIBackend(LLMConfig(backend="openai", structured_outputs="off"))
    assert not b.supports_contracts


def test_remote_server_requires_opt_in():
    with pytest.raises(GenrecsysError, match="allow-remote"):
        OpenAIBackend(LLMConfig(backend="openai", base_url="https://api.example.com/v1"))
    OpenAIBackend(LLMConfig(backend="openai", base_url="https://api.example.com/v1", allow_remote=True)).close()


def test_api_key_is_read_from_the_configured_env_variable(server, monkeypatch):
    monkeypatch.setenv("MY_TEST_KEY", "sk-test-123")
    b = OpenAIBackend(LLMConfig(backend="openai", base_url=server.url, api_key_env="MY_TEST_KEY"))
    assert b._client.headers["Authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in json.dumps(b._body(Request.chat("x")))


def test_first_token_logprobs_are_asked_for_and_read_back(backend, server, tmp_path):
    from genrecsys.llm.client import LLM

    params = SamplingParams(max_tokens=1, logprobs=3)
    (c,) = backend.generate([Request.chat("which letter?", params=params)])
    body = server.bodies[-1]
    assert body["logprobs"] is True and body["top_logprobs"] == 3 and body["max_tokens"] == 1
    assert c.top_logprobs == {"A": -0.5, "B": -1.5, "C": -2.5}
    (plain,) = backend.generate([Request.chat("which letter?")])
    assert "logprobs" not in server.bodies[-1] and plain.top_logprobs is None
    # through the cache: a rerun returns the same figures without asking again
    llm = LLM(LLMConfig(backend="openai", base_url=server.url), backend=backend, cache_path=tmp_path / "c.sqlite")
    first = llm.generate([Request.chat("cached?", params=params)])[0].top_logprobs
    n = len(server.bodies)
    again = llm.generate([Request.chat("cached?", params=params)])[0]
    assert again.cached and again.top_logprobs == first and len(server.bodies) == n


def test_asking_for_no_logprobs_keeps_the_cache_keys_of_earlier_versions():
    assert "logprobs" not in SamplingParams().to_dict()
    r = Request.chat("x", params=SamplingParams(max_tokens=1))
    assert r.cache_key("b", "m") != Request.chat("x", params=SamplingParams(max_tokens=1, logprobs=2)).cache_key("b", "m")
    with pytest.raises(ValueError, match="logprobs"):
        SamplingParams(logprobs=21)
