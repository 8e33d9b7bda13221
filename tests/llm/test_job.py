"""Exactly-once generation through the cache, against the real test HTTP server."""
from dataclasses import replace

import pytest
from pydantic import BaseModel

from genrecsys.config import LLMConfig
from genrecsys.llm.accounting import Price, PriceTable
from genrecsys.llm.client import LLM
from genrecsys.llm.contracts import Contract
from genrecsys.llm.job import generate, keep_recent, render_requests
from genrecsys.llm.parse import parse_json
from genrecsys.llm.templates import PromptTemplate
from genrecsys.llm.types import Completion, Request, SamplingParams
from openai_server import answer_for


class Item(BaseModel):
    title: str
    abstract: str
    category: str


def _reqs(n, **kw):
    return [Request.chat(f"prompt {i}", **kw) for i in range(n)]


def test_every_row_ends_ok_or_as_a_recorded_error_and_counts_add_up(backend, cache):
    reqs = _reqs(3) + [Request.chat("bad MODE=400"), Request.chat("flaky MODE=500x1")]
    out, st = generate(reqs, backend, cache)
    assert [c.ok for c in out] == [True, True, True, False, True]
    assert st.total.requests == 5 == st.total.ok + st.total.failed
    assert st.total.failed == 1 and "HTTP 400" in out[3].error


def test_unchanged_rerun_makes_zero_backend_calls_and_returns_the_same_answers(backend, cache, server):
    first, _ = generate(_reqs(6), backend, cache)
    before = len(server.bodies)
    second, st = generate(_reqs(6), backend, cache)
    assert len(server.bodies) == before
    assert st.total.backend_calls == 0 and st.total.cache_hits == 6
    assert [c.text for c in second] == [c.text for c in first] and all(c.cached for c in second)


def test_failed_rows_are_not_cached_and_are_retried_by_the_next_run(backend, cache, server):
    generate([Request.chat("x MODE=400")], backend, cache)
    generate([Request.chat("x MODE=400")], backend, cache)
    assert server.attempts["x MODE=400"] == 2 and len(cache) == 0


@pytest.mark.parametrize("change", ["template_version", "model", "params", "contract", "other_contract"])
def test_changing_template_version_model_params_or_contract_invalidates_the_cache(server, backend, cache, change):
    base = Request.chat("p", template="t", template_version="1")
    generate([base], backend, cache)
    variant = {"template_version": Request.chat("p", template="t", template_version="2"),
               "params": Request.chat("p", template="t", template_version="1", params=SamplingParams(max_tokens=99)),
               "contract": Request.chat("p", template="t", template_version="1",
                                        contract=Contract("json", {"type": "object"})),
               "other_contract": Request.chat("p", template="t", template_version="1",
                                              contract=Contract("choice", ["p", "q"])),
               "model": base}[change]
    if change == "other_contract":
        generate([replace(variant, contract=Contract("choice", ["p"]))], backend, cache)
    if change == "model":
        backend.model_id = "another-model"
    _, st = generate([variant], backend, cache)
    assert st.total.backend_calls == 1 and st.total.cache_hits == 0


def test_keys_of_uncontracted_requests_are_those_of_earlier_versions():
    # computed with the code before contracts existed: caches built then stay valid
    r = Request.chat("hello", system="sys", template="t", template_version="2", params=SamplingParams(max_tokens=9))
    assert r.cache_key("local", "m@1") == "d65974f01b5282322842429944b016f43540df38d0731e653758f0d40422b4fa"


def test_the_same_prompt_twice_in_one_job_is_paid_once(backend, cache, server):
    out, st = generate([Request.chat("same"), Request.chat("other"), Request.chat("same")], backend, cache)
    assert server.attempts["same"] == 1
    assert out[0].text == out[2].text == answer_for("same")
    assert st.total.backend_calls == 2 and st.total.cache_hits == 1


def test_prose_wrapped_json_parses_and_keeps_the_raw_text(backend, cache):
    (c,), st = generate([Request.chat("p MODE=prose")], backend, cache, parser=lambda t: parse_json(t, Item))
    assert c.ok and isinstance(c.parsed, Item) and c.text.startswith("Sure!")
    assert st.total.reasks == 0


def test_wrong_schema_is_reasked_once_and_then_accepted(backend, cache, server):
    (c,), st = generate([Request.chat("p MODE=wrongonce")], backend, cache, parser=lambda t: parse_json(t, Item))
    assert c.ok and c.parsed.category == "news"
    assert st.total.reasks == 1 and server.attempts["p MODE=wrongonce"] == 2
    reask = server.bodies[-1]["messages"]
    assert reask[-2]["role"] == "assistant" and "could not be used" in reask[-1]["content"]


def test_persistently_wrong_schema_fails_the_row_after_bounded_reasks(backend, cache, server):
    (c,), st = generate([Request.chat("p MODE=wrong")], backend, cache, parser=lambda t: parse_json(t, Item),
                        max_reasks=2)
    assert not c.ok and c.error.startswith("parse:") and c.text  # raw text kept
    assert server.attempts["p MODE=wrong"] == 3 and st.total.reasks == 2
    assert st.total.failed == 1


def test_truncated_answers_are_counted_separately(backend, cache):
    out, st = generate([Request.chat("p MODE=truncjson"), Request.chat("q")], backend, cache,
                       parser=lambda t: parse_json(t), max_reasks=0)
    assert st.total.truncated == 1
    assert not out[0].ok and out[0].finish_reason == "length"


def test_reasks_are_cached_too(backend, cache, server):
    parser = lambda t: parse_json(t, Item)  # noqa: E731
    generate([Request.chat("p MODE=wrongonce")], backend, cache, parser=parser)
    n = len(server.bodies)
    (c,), st = generate([Request.chat("p MODE=wrongonce")], backend, cache, parser=parser)
    assert len(server.bodies) == n and c.ok and st.total.backend_calls == 0


def test_money_counts_backend_calls_only_and_total_counts_cached_answers_too(backend, cache):
    prices = PriceTable({"test-model": Price(prompt=1e6, completion=2e6)})  # $1 per prompt token, $2 per completion
    _, first = generate([Request.chat("a b c")], backend, cache, prices=prices)
    _, again = generate([Request.chat("a b c")], backend, cache, prices=prices)
    assert first.total.cost == first.total.cost_total == 3 * 1 + 1 * 2
    assert again.total.cost == 0 and again.total.cost_total == first.total.cost_total


def test_per_task_usage_is_reported(backend, cache):
    _, st = generate([Request.chat("a", task="summarize"), Request.chat("b", task="profile"),
                      Request.chat("c", task="profile")], backend, cache)
    assert st.tasks["summarize"].requests == 1 and st.tasks["profile"].requests == 2


def test_upstream_failed_rows_pass_through_and_are_counted(backend, cache):
    out, st = generate([Completion.failed("prompt too long"), Request.chat("ok")], backend, cache)
    assert out[0].error == "prompt too long" and out[1].ok
    assert st.total.requests == 2 and st.total.failed == 1 and st.total.backend_calls == 1


# ----------------------------------------------------------------------------- rendering
HIST = PromptTemplate(name="hist", version="1", user="User {{ user_id }} read:\n{{ history | numbered }}",
                      variables=("user_id", "history"), id_variables=("user_id",))


def test_overlong_prompt_is_truncated_by_the_callers_rule(backend):
    backend.max_context = 60
    rows = [{"user_id": 1, "history": [f"title number {i} " * 3 for i in range(40)]}]
    (r,) = render_requests(HIST, rows, backend, params=SamplingParams(max_tokens=10), truncate=keep_recent("history"))
    assert isinstance(r, Request)
    assert backend.count_tokens(r.messages) <= 50
    assert "title number 0 " in r.messages[0]["content"]  # the most recent (first) items are kept


def test_overlong_prompt_without_rule_fails_that_row_only(backend):
    backend.max_context = 60
    rows = [{"user_id": 1, "history": ["x " * 300]}, {"user_id": 2, "history": ["short"]}]
    out = render_requests(HIST, rows, backend, params=SamplingParams(max_tokens=10))
    assert isinstance(out[0], Completion) and "over the limit" in out[0].error
    assert isinstance(out[1], Request)


def test_missing_template_variable_fails_that_row_with_its_name(backend):
    out = render_requests(HIST, [{"history": ["a"]}, {"user_id": 3, "history": ["b"]}], backend)
    assert isinstance(out[0], Completion) and "user_id" in out[0].error and isinstance(out[1], Request)


def test_remote_backend_never_sees_a_raw_user_id(server, backend, tmp_path):
    llm = LLM(LLMConfig(backend="openai", base_url=server.url), cache_dir=tmp_path, backend=backend)
    llm.run_template(HIST, [{"user_id": "alice-4711", "history": ["Heat (1995)"]}])
    body = str(server.bodies[-1])
    assert "alice-4711" not in body and "Heat (1995)" in body
    again = LLM(LLMConfig(backend="openai", base_url=server.url), cache_dir=tmp_path, backend=backend)
    again.run_template(HIST, [{"user_id": "alice-4711", "history": ["Heat (1995)"]}])
    assert again.stats.total.cache_hits == 1  # the pseudonym is stable across runs on one machine


def test_a_refused_contract_is_answered_without_it_and_counted_as_a_fallback(backend, cache, server):
    reqs = [Request.chat("p MODE=nostructured", task="t", contract=Contract("json", {"type": "object"})),
            Request.chat("q", task="t", contract=Contract("json", {"type": "object"}))]
    out, st = generate(reqs, backend, cache)
    assert [c.ok for c in out] == [True, True] and [c.fallback for c in out] == [True, False]
    assert st.total.fallbacks == 1 and st.task("t").fallbacks == 1 and st.total.constrained_answers == 1
    _, again = generate(reqs, backend, cache)  # from the cache: still known to be unconstrained
    assert again.total.cache_hits == 2 and again.total.fallbacks == 1
