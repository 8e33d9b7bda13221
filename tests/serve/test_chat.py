"""The conversational recommender in-process: title mentions, the SQLite store, and one turn
through the real embedded SmolLM2 with its contract (items drawn from the candidates only)."""
from __future__ import annotations

import asyncio

import pytest
from serving import train_tiny

from genrecsys.config import LLMConfig
from genrecsys.serve.chat import Chatbot, ChatError, Conversations
from genrecsys.serve.service import Service


@pytest.fixture(scope="module")
def service(block_dataset_dir, tmp_path_factory):
    svc = Service({"s": train_tiny(block_dataset_dir, tmp_path_factory.mktemp("chat") / "sasrec")})
    yield svc
    svc.close()


def test_mentions_are_whole_title_matches_longest_first(service):
    run = service.run("s")
    found = Chatbot.mentioned(run, "loved item 12 (GROUP 1)! and Item 3 (group 0), not Item 1")
    assert [run.describe(i)["id"] for i in found] == ["i12", "i3"]  # "Item 1" is no whole title here


def test_the_store_keeps_turns_in_order_and_refuses_unknown_conversations(tmp_path):
    store = Conversations(tmp_path / "c.sqlite")
    cid = store.create("s", "u1")
    store.add(cid, "user", "hello", ["i1"])
    store.add(cid, "assistant", "hi", ["i2", "i3"])
    store.close()
    again = Conversations(tmp_path / "c.sqlite")  # another process would see the same
    conv = again.get(cid)
    assert conv["user"] == "u1" and [(m["role"], m["items"]) for m in conv["messages"]] == [
        ("user", ["i1"]), ("assistant", ["i2", "i3"])]
    with pytest.raises(ChatError, match="unknown conversation"):
        again.get("nope")


@pytest.mark.integration
def test_a_turn_with_the_embedded_llm_recommends_only_candidates_under_its_contract(service, tmp_path,
                                                                                     ml100k_cache_dir):
    bot = Chatbot(service, tmp_path / "chat.sqlite", LLMConfig(cache=str(tmp_path / "llm.sqlite")), ml100k_cache_dir,
                  encoder="none")
    try:
        r = asyncio.run(bot.turn("s", "I liked Item 3 (group 0). What next?", k=3))
        assert r["constrained"] and r["parsed"] and r["dropped"] == 0
        run = service.run("s")
        liked = {"i3"}
        assert 1 <= len(r["items"]) <= 3 and not liked & {it["id"] for it in r["items"]}
        assert all(it["title"] == str(run.titles[run.item_index(it["id"])]) for it in r["items"])
        assert bot.llm.stats.total.contract_violations == 0
    finally:
        bot.close()
