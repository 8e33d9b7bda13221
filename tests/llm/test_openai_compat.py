"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1."""
import json

import pytest

from genrecsys.config import LLMConfig
from genrecsys.errors import GenrecsysError
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


def test_request_body_carries_sampling_params_and_schema(backend, server):
    r = Request.chat("p", params=SamplingParams(max_tokens=7, temperature=0.5, seed=3, stop=("END",)),
                     schema={"type": "object"})
    backend.generate([r])
    body = server.bodies[-1]
    assert body["max_tokens"] == 7 and body["temperature"] == 0.5 and body["seed"] == 3 and body["stop"] == ["END"]
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}


def test_remote_server_requires_opt_in():
    with pytest.raises(GenrecsysError, match="allow-remote"):
        OpenAIBackend(LLMConfig(backend="openai", base_url="https://api.example.com/v1"))
    OpenAIBackend(LLMConfig(backend="openai", base_url="https://api.example.com/v1", allow_remote=True)).close()


def test_api_key_is_read_from_the_configured_env_variable(server, monkeypatch):
    monkeypatch.setenv("MY_TEST_KEY", "sk-test-123")
    b = OpenAIBackend(LLMConfig(backend="openai", base_url=server.url, api_key_env="MY_TEST_KEY"))
    assert b._client.headers["Authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in json.dumps(b._body(Request.chat("x")))
