"""The personalized generator: synthetic items stay out of the catalogue and the
candidates, failures add nothing, quality checks count what they should."""
from __future__ import annotations

import pytest

from augmentdata import llm, news_dir, scripted  # noqa: F401  (pytest fixtures)
from genrecsys.augment import augment, history_with_synthetic, load_variant, read_artefacts, synthetic_item_table
from genrecsys.augment.generate import GenerateConfig, generate_items, parse_item, synthetic_histories
from genrecsys.data.load import load_dataset
from genrecsys.llm.parse import ParseError

CATS = ["finance", "health", "sports"]


@pytest.mark.parametrize("answer,expected", [
    ('{"title": "Rates rise", "abstract": "The Fed acts.", "category": "Finance"}',
     {"title": "Rates rise", "abstract": "The Fed acts.", "category": "finance"}),
    ("Sure!\n```json\n{'Title': 'Rates rise', 'description': 'x',}\n```", {"title": "Rates rise", "abstract": "x", "category": ""}),
    ("Title: Rates rise\nAbstract: The Fed acts.\nCategory: finance",
     {"title": "Rates rise", "abstract": "The Fed acts.", "category": "finance"}),
    ('{"title": "Rates rise", "category": "celebrity"}', {"title": "Rates rise", "abstract": "", "category": ""}),
])
def test_item_formats_of_small_models_are_accepted(answer, expected):
    assert parse_item(answer, CATS) == expected


@pytest.mark.parametrize("answer", ["no idea", '{"name": "x", "tags": ["a"]}', '{"title": "Rates ri'])
def test_an_answer_without_a_titled_item_is_a_parse_error(answer):
    with pytest.raises(ParseError):
        parse_item(answer, CATS)


def test_synthetic_items_are_never_in_the_catalogue_or_the_candidates(news_dir, llm, tmp_path):
    from genrecsys.data.load import make_split

    out = augment("generate", str(news_dir), tmp_path / "ng", llm)
    v = load_variant(out)
    syn = v.synthetic
    assert sorted(syn["item"]) == ["syn-r1-alice-1", "syn-r1-alice-2", "syn-r1-bob-1"]
    ds = load_dataset(str(out))
    assert not set(syn["item"]) & set(ds.items["item"])
    assert not set(syn["item"]) & set(ds.interactions["item"])
    assert ds.items.equals(load_dataset(str(news_dir)).items)
    assert ds.interactions.equals(load_dataset(str(news_dir)).interactions)
    split = make_split(ds, "loo")
    assert not set(syn["item"]) & set(split.item_ids)  # no candidate, negative or target can be one
    users = ds.users.set_index("user")
    assert list(users.loc["alice", "synthetic_history"]) == ["syn-r1-alice-1", "syn-r1-alice-2"]
    assert list(users.loc["dave", "synthetic_history"]) == []  # not a new user


def test_generated_items_keep_what_the_model_wrote(news_dir, llm, tmp_path):
    syn = load_variant(augment("generate", str(news_dir), tmp_path / "ng", llm)).synthetic.set_index("item")
    assert syn.loc["syn-r1-alice-1", "title"] == "Free flu shots at the new wing"
    assert syn.loc["syn-r1-alice-2", "category"] == "health"  # "Health" matched to the catalogue's categories
    assert syn.loc["syn-r1-bob-1", "category"] == ""  # "gossip" is not a catalogue category: left empty
    assert set(syn["user"]) == {"alice", "bob"} and (syn["round"] == 1).all()


def test_quality_checks_count_failures_copies_and_bad_categories(news_dir, llm, tmp_path):
    out = augment("generate", str(news_dir), tmp_path / "ng", llm)
    m = load_variant(out).manifest
    q = m["quality"]["generate"]
    # alice, bob, carol are new users (1-2 visible items); 2 prompts each; bob's 2nd and carol's both fail
    assert m["steps"][0]["rows"] == 6 and m["steps"][0]["parse_failures"] == 3
    assert q["parse_failure_rate"] == pytest.approx(0.5)
    assert q["generated"] == 3 and q["identical_to_catalog"] == 1 and q["category_outside_vocabulary"] == 1
    failed = [a for a in read_artefacts(out) if a["error"]]
    assert {(a["id"], a["k"]) for a in failed} == {("bob", 2), ("carol", 1), ("carol", 2)}


def test_second_prompt_lists_the_first_invented_item(news_dir, llm, tmp_path, scripted):
    augment("generate", str(news_dir), tmp_path / "ng", llm)
    prompts = [b["messages"][-1]["content"] for b in scripted.bodies if "Hospital opens" in b["messages"][-1]["content"]]
    assert any("already invented" in p and "Free flu shots" in p for p in prompts)
    assert all("1. (travel) Flights get cheaper this winter\n2. (health) Hospital opens new wing" in p for p in prompts)


def test_history_with_synthetic_puts_synthetic_items_before_the_real_clicks(news_dir, llm, tmp_path):
    syn = load_variant(augment("generate", str(news_dir), tmp_path / "ng", llm)).synthetic
    assert history_with_synthetic("alice", ["N1", "N2"], syn) == ["syn-r1-alice-1", "syn-r1-alice-2", "N1", "N2"]
    assert history_with_synthetic("dave", ["N6"], syn) == ["N6"]
    per_user = synthetic_histories(syn)  # precomputed once for a loop over users
    assert history_with_synthetic("alice", ["N1"], per_user) == ["syn-r1-alice-1", "syn-r1-alice-2", "N1"]
    table = synthetic_item_table(syn)
    assert list(table.columns) == ["item", "title", "abstract", "category"] and len(table) == 3


def test_cold_start_histories_decide_who_is_served_and_what_the_prompt_shows(news_dir, llm, scripted):
    from genrecsys.augment import open_variant
    from genrecsys.data.coldstart import simulate_cold_start
    from genrecsys.data.load import make_split

    source = open_variant(str(news_dir))
    cold = simulate_cold_start(make_split(source.dataset, "loo"), fraction=1.0, min_len=1, max_len=1, seed=0)
    split = cold.split
    histories = {split.user_ids[u]: [split.item_ids[i] for i in split.train.of(u)[::-1]]
                 for u in range(split.n_users) if cold.new_user[u]}
    step = generate_items(source, llm, GenerateConfig(n_items=1), histories=histories)
    assert step.rows == 4  # every simulated new user, dave (6 real items) included
    (dave,) = [b["messages"][-1]["content"] for b in scripted.bodies if "Champion keeps the belt" in b["messages"][-1]["content"]]
    assert "Derby ends" not in dave and "2. " not in dave.split("Items this user chose:")[1].split("<<<end")[0]
