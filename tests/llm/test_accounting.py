from genrecsys.llm.accounting import JobStats, Price, PriceTable, Usage
from genrecsys.llm.types import Completion


def test_price_table_finds_models_by_provider_prefixed_names():
    table = PriceTable({"gpt-4o-mini": Price(0.15, 0.6)})
    assert table.price("openai/gpt-4o-mini") == Price(0.15, 0.6)
    assert table.price("local-model") == Price()


def test_price_table_from_config_overrides_defaults_and_rejects_bad_entries():
    import pytest

    from genrecsys.errors import GenrecsysError

    t = PriceTable.from_dict({"m": {"prompt": 1, "completion": 2}, "default": {"prompt": 0.1}})
    assert t.cost("m", 1_000_000, 1_000_000) == 3.0 and t.cost("other", 1_000_000, 0) == 0.1
    with pytest.raises(GenrecsysError, match="USD per 1M"):
        PriceTable.from_dict({"m": {"input": 1}})


def test_cached_answers_cost_nothing_but_count_in_the_total_cost():
    u, prices = Usage(), PriceTable({"m": Price(1e6, 1e6)})
    u.add_call(Completion(text="a", prompt_tokens=2, completion_tokens=3, model="m"), prices)
    u.add_call(Completion(text="a", prompt_tokens=2, completion_tokens=3, model="m", cached=True), prices)
    assert (u.backend_calls, u.cache_hits, u.cost, u.cost_total) == (1, 1, 5.0, 10.0)
    assert u.paid_completion_tokens == 3 and u.completion_tokens == 6


def test_job_stats_merge_adds_counts_per_task():
    a, b = JobStats(), JobStats()
    a.task("x").requests = 2
    a.total.requests = 2
    b.task("x").requests = 3
    b.task("y").requests = 1
    b.total.requests = 4
    a.merge(b)
    assert a.total.requests == 6 and a.tasks["x"].requests == 5 and a.tasks["y"].requests == 1
