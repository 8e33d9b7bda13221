"""Chain (profiler -> generator), ALL, and iterative rounds."""
from __future__ import annotations

import pytest

from augmentdata import llm, news_dir, scripted  # noqa: F401  (pytest fixtures)
from genrecsys.augment import augment, load_variant
from genrecsys.data.load import load_dataset


def test_chain_removes_users_without_a_valid_profile(news_dir, llm, tmp_path):
    out = augment("chain", str(news_dir), tmp_path / "chain", llm)
    ds = load_dataset(str(out))
    # carol: unparsable profile; dave: no topic in the vocabulary
    assert sorted(ds.users["user"]) == ["alice", "bob"]
    assert sorted(ds.interactions["user"].unique()) == ["alice", "bob"]
    m = load_variant(out).manifest
    assert m["quality"]["chain"]["users_removed"] == 2
    assert m["quality"]["chain"]["interactions_kept_fraction"] == pytest.approx(8 / 19, abs=1e-6)
    assert [s["task"] for s in m["steps"]] == ["profile", "chain"]


def test_chain_prompts_carry_the_profile_topics(news_dir, llm, tmp_path, scripted):
    augment("chain", str(news_dir), tmp_path / "chain", llm)
    gen = [b["messages"][-1]["content"] for b in scripted.bodies if "Invent one new item" in b["messages"][-1]["content"]]
    alice = [p for p in gen if "Hospital opens" in p]
    assert alice and all("interested in: health, travel" in p for p in alice)
    assert not any("Mystery stew" in p for p in gen)  # carol has no profile: not served


def test_all_combines_titles_profiles_and_chain_items_and_keeps_every_user(news_dir, llm, tmp_path, scripted):
    out = augment("all", str(news_dir), tmp_path / "all", llm)
    later = [b["messages"][-1]["content"] for b in scripted.bodies if "Write one better title" not in b["messages"][-1]["content"]]
    assert any("City hospital adds a new wing" in p for p in later)  # later steps read the summarizer's titles
    assert not any("Hospital opens new wing" in p for p in later if "Allowed topics" in p)
    v = load_variant(out)
    ds = v.dataset
    assert sorted(ds.users["user"]) == ["alice", "bob", "carol", "dave"]
    assert len(ds.interactions) == len(load_dataset(str(news_dir)).interactions)
    assert ds.items.set_index("item").loc["N1", "title"] == "City hospital adds a new wing"
    assert list(ds.users.set_index("user").loc["alice", "topics"]) == ["health", "travel"]
    assert set(v.synthetic["user"]) == {"alice", "bob"} and set(v.synthetic["task"]) == {"chain"}
    assert [s["task"] for s in v.manifest["steps"]] == ["summarize", "profile", "chain"]
    assert v.manifest["templates"] == {"summarize_item": "2", "profile_user": "2", "generate_item": "2"}


def test_a_variant_is_the_input_of_the_next_round(news_dir, llm, tmp_path):
    first = augment("generate", str(news_dir), tmp_path / "r1", llm)
    second = augment("summarize", str(first), tmp_path / "r2", llm)
    third = augment("summarize", str(second), tmp_path / "r3", llm)
    v = load_variant(third)
    assert v.manifest["round"] == 3
    assert v.manifest["parent"] == {"path": str(second), "name": "tiny-news+generate+summarize", "round": 2,
                                    "task": "summarize"}
    assert [r["task"] for r in v.manifest["rounds"]] == ["generate", "summarize", "summarize"]
    assert v.manifest["source_dataset"] == "tiny-news"
    # round 3 summarized round 2's titles; the first round's originals are kept
    items = v.dataset.items.set_index("item")
    assert items.loc["N1", "title_original"] == "Hospital opens new wing"
    assert len(v.synthetic) == 3 and (v.synthetic["round"] == 1).all()  # carried along, untouched
    assert load_variant(first).manifest["round"] == 1  # the parent is not modified
