"""The reasoning pool: what a row holds, growth that only pays for new seeds, persistence,
answers that parse to nothing, failed requests, and bad seed input."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from genrecsys.config import LLMConfig
from genrecsys.data.splits import Part, leave_one_out
from genrecsys.errors import GenrecsysError
from genrecsys.llm.client import LLM, EchoBackend
from genrecsys.reasoning.pool import PoolConfig, build_pool, llm_metrics, load_pool, prompt_rows
from genrecsys.reasoning.rationale import TitleCatalog
from genrecsys.reasoning.sampling import SamplingConfig, adaptive_seed_sample
from reasoningdata import echo_llm, group_dataset, group_matrix, matrix, split  # noqa: F401  (fixtures)

# With the echo backend the answer is the prompt, so this template makes a well-formed
# rationale out of the user's own history: the real parser and matcher then run end to end.
ECHO_TEMPLATE = """name: echo_rationale
version: "1"
variables: [history, n_items]
user: |
  Step 1: Likes {{ history[0] }}.
  Step 2: Items: {{ history[1] }}; Nonexistent Film
"""


@pytest.fixture
def echo_cfg(tmp_path):
    d = tmp_path / "templates"
    d.mkdir()
    (d / "echo_rationale.yaml").write_text(ECHO_TEMPLATE)
    return LLMConfig(templates_dir=str(d), cache=str(tmp_path / "cache.sqlite"))


def echo(cfg):
    return LLM(cfg, backend=EchoBackend())


def item_index(split, raw):
    return int(np.flatnonzero(split.item_ids == raw)[0])


def test_pool_rows_hold_the_parsed_rationale_matched_items_and_the_seed_vector(split, matrix, echo_cfg):
    llm = echo(echo_cfg)
    pool, stats = build_pool(llm, split, matrix, [0, 4, 9], PoolConfig(template="echo_rationale"))
    assert len(pool) == 3 and pool.users.tolist() == [0, 4, 9]
    assert np.array_equal(pool.vectors, matrix[[1, 5, 10]]) and pool.dim == 4
    row = pool.frame.iloc[0]
    recent = split.train.of(0)[::-1]  # most recent first
    cat = TitleCatalog.from_split(split)
    genre = split.dataset.items.genres[int(split.item_ids[recent[0]][1:]) - 1]
    assert row.parsed and row.step1 == f"Likes {cat.display(int(recent[0]))} [{genre}]."
    assert row.matched_items == [recent[1]]  # the named history item, matched back by title
    assert row.unmatched == ["Nonexistent Film"]  # reported, never invented
    assert row.novel_items == []  # it was in the history
    assert (row.backend, row.model, row.template, row.template_version) == ("echo", "echo-1", "echo_rationale", "1")
    assert row.strategy == "given" and row.user_id == split.user_ids[0]
    assert row.prompt_tokens > 0 and row.completion_tokens > 0
    assert stats.total.requests == 3 and stats.total.backend_calls == 3
    assert pool.meta["dim"] == 4 and pool.meta["failed"] == []


def test_growing_the_pool_only_calls_the_llm_for_new_seeds(split, matrix, echo_cfg):
    first = SamplingConfig(budget=6, n_clusters=3)
    small = adaptive_seed_sample(matrix, split.train.lengths(), first)
    large = adaptive_seed_sample(matrix, split.train.lengths(), replace(first, budget=10))
    pool1, stats1 = build_pool(echo(echo_cfg), split, matrix, small)
    pool2, stats2 = build_pool(echo(echo_cfg), split, matrix, large)  # a new process, the same cache
    assert stats1.total.backend_calls == 6
    assert stats2.total.requests == 10 and stats2.total.cache_hits == 6
    assert stats2.total.backend_calls == 4  # the new seeds only
    assert pool2.frame.text.iloc[:6].tolist() == pool1.frame.text.tolist()
    assert pool2.frame.strategy.tolist() == large.strategy.tolist()
    _, stats3 = build_pool(echo(echo_cfg), split, matrix, large)
    assert stats3.total.backend_calls == 0


def test_pool_round_trips_through_its_directory(split, matrix, echo_cfg, tmp_path):
    pool, _ = build_pool(echo(echo_cfg), split, matrix, [1, 2, 3], PoolConfig(template="echo_rationale"),
                         out_dir=tmp_path / "pool")
    assert sorted(p.name for p in (tmp_path / "pool").iterdir()) == ["pool.json", "pool.parquet", "vectors.npy"]
    back = load_pool(tmp_path / "pool")
    assert back.frame.to_dict("records") == pool.frame.to_dict("records")
    assert np.array_equal(back.vectors, pool.vectors) and back.vectors.dtype == np.float32
    assert back.meta["template"] == "echo_rationale" and back.texts("step1") == pool.texts("step1")
    with pytest.raises(GenrecsysError, match="not a reasoning pool"):
        load_pool(tmp_path)


def test_unparseable_answers_are_kept_flagged_and_failed_requests_left_out(server, tmp_path):
    # "MODE=400" in a title makes the test server reject every prompt that shows it.
    split = leave_one_out(group_dataset(extra_titles={17: "Heat MODE=400"}))
    m = group_matrix(split)
    heat = item_index(split, "i17")
    has_heat = [u for u in range(split.n_users) if heat in split.train.of(u)]
    clean = [u for u in range(split.n_users) if heat not in split.train.of(u)]
    llm = LLM(LLMConfig(backend="openai", base_url=server.url, model="test-model", concurrency=2, timeout_s=5,
                        max_attempts=1), cache_dir=tmp_path, cache_path=tmp_path / "cache.sqlite")
    seeds = clean[:3] + has_heat[:1]
    pool, stats = build_pool(llm, split, m, seeds)
    assert pool.users.tolist() == clean[:3]
    assert [f["user"] for f in pool.meta["failed"]] == has_heat[:1]
    assert any("failed at the LLM" in n for n in pool.meta["notes"])
    assert stats.total.failed == 1
    for _, row in pool.frame.iterrows():  # "answer-<hash>": no structure at all
        assert not row.parsed and row.text.startswith("answer-")
        assert row.step1 == row.step2 == row.text and len(row.matched_items) == 0
    metrics = llm_metrics(pool, stats, split.n_users)
    assert metrics["unparsed"] == 3 and metrics["failed"] == 1
    llm.close()


def without_history(split, users):
    """The split with the given users' training items removed."""
    lengths = split.train.lengths()
    keep = ~np.isin(split.train.users(), users)
    new_len = np.where(np.isin(np.arange(split.n_users), users), 0, lengths)
    indptr = np.concatenate([[0], np.cumsum(new_len)]).astype(np.int64)
    return replace(split, train=Part(indptr, split.train.items[keep]))


def test_seeds_with_empty_histories_are_skipped_with_a_note(split, matrix, echo_llm):
    emptied = without_history(split, [2, 5])
    pool, _ = build_pool(echo_llm, emptied, matrix, [1, 2, 5, 7])
    assert pool.users.tolist() == [1, 7]
    assert "2 seed(s) with an empty history skipped" in pool.meta["notes"]
    with pytest.raises(GenrecsysError, match="every seed user has an empty history"):
        build_pool(echo_llm, emptied, matrix, [2, 5])


def test_bad_seed_input_is_a_clear_error(split, matrix, echo_llm):
    with pytest.raises(GenrecsysError, match="pool would be empty"):
        build_pool(echo_llm, split, matrix, [])
    with pytest.raises(GenrecsysError, match=f"seed user index {split.n_users} is out of range"):
        build_pool(echo_llm, split, matrix, [0, split.n_users])
    with pytest.raises(GenrecsysError, match="distinct"):
        build_pool(echo_llm, split, matrix, [3, 3])
    with pytest.raises(GenrecsysError, match="row 0 = padding"):
        build_pool(echo_llm, split, matrix[1:], [0])
    assert echo_llm.backend.calls == 0


def test_llm_metrics_count_every_answer_the_pool_needed(split, matrix, echo_cfg):
    build_pool(echo(echo_cfg), split, matrix, [0, 1])
    pool, stats = build_pool(echo(echo_cfg), split, matrix, [0, 1, 2])
    m = llm_metrics(pool, stats, split.n_users)
    assert {k: m[k] for k in ("calls", "users", "seed_users", "backend_calls", "cache_hits")} == {
        "calls": 3, "users": split.n_users, "seed_users": 3, "backend_calls": 1, "cache_hits": 2}
    assert m["prompt_tokens"] == int(pool.frame.prompt_tokens.sum()) > 0
    assert m["completion_tokens"] == int(pool.frame.completion_tokens.sum()) > 0


def test_direct_prompting_ablation_goes_through_the_same_pool(split, matrix, echo_llm):
    pool, _ = build_pool(echo_llm, split, matrix, [0, 1], PoolConfig(template="reland_direct", n_items=4))
    assert set(pool.frame.template) == {"reland_direct"}
    assert all("Recommend 4 titles" in t for t in pool.frame.text)


def test_prompts_show_the_training_history_most_recent_first_and_capped(split):
    cat = TitleCatalog.from_split(split)
    (row,) = prompt_rows(split, [0], cat, PoolConfig(max_history=3))
    recent = split.train.of(0)[::-1][:3]
    genre = {i: split.dataset.items.genres[int(split.item_ids[i][1:]) - 1] for i in recent}
    assert row["history"] == [f"{cat.display(int(i))} [{genre[i]}]" for i in recent]
    assert row["categories"] == ["Crime", "Romance", "Sci-Fi"] and row["n_items"] == 10
    (plain,) = prompt_rows(split, [0], cat, PoolConfig(max_history=3, show_categories=False))
    assert plain["history"] == [cat.display(int(i)) for i in recent] and "categories" not in plain


def test_the_closed_list_of_items_leaves_out_the_seeds_own_history(split):
    """Step 2 asks for titles the user has not chosen yet; the contract's list enforces it,
    so a served rationale cannot repeat the seed's history (the leakage `genrecsys audit` found)."""
    cat = TitleCatalog.from_split(split)
    everything = prompt_rows(split, [0, 1], cat, PoolConfig(max_history=3))
    assert everything[0]["titles"] == everything[1]["titles"]  # by default one list (one grammar to compile)
    rows = prompt_rows(split, [0, 1], cat, PoolConfig(max_history=3, fresh_items=True))
    for u, row in zip([0, 1], rows):
        seen = {cat.display(int(i)) for i in split.train.of(u)}
        assert seen and not seen & set(row["titles"])
        assert len(row["titles"]) == len({cat.display(i) for i in range(1, split.n_items + 1)} - seen)
