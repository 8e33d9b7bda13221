"""The user profiler: closed vocabularies, honest failures, the columns the interest
fusion reads, and prompts that never see evaluated clicks."""
from __future__ import annotations

import pytest

from augmentdata import llm, news_dir, scripted  # noqa: F401  (pytest fixtures)
from genrecsys.augment import Vocabulary, augment, load_variant
from genrecsys.augment.inputs import user_histories
from genrecsys.augment.profile import parse_profile
from genrecsys.data.load import load_dataset
from genrecsys.llm.parse import ParseError

NEWS = Vocabulary.news()


@pytest.mark.parametrize("answer,topics,regions", [
    ("[topics] health, travel\n[region] none", ["health", "travel"], []),
    ("**Topics:** Technology news, Food & drink\nRegion: New York City, NY", ["technology", "food"], ["New York"]),
    ("1. Finance\n2. Real estate", ["finance", "real estate"], []),
])
def test_profile_formats_of_small_models_are_accepted(answer, topics, regions):
    p = parse_profile(answer, NEWS)
    assert (p.topics, p.regions) == (topics, regions)


def test_topics_outside_the_vocabulary_are_dropped_and_reported():
    p = parse_profile("[topics] sports, health, celebrity gossip\n[region] Atlantis", NEWS)
    assert p.topics == ["health"] and p.dropped_topics == ["sports", "celebrity gossip"]
    assert p.regions == [] and p.dropped_regions == ["Atlantis"]


@pytest.mark.parametrize("answer", [
    "I cannot tell what this user likes.",
    # SmolLM2 echoing the history: one title happens to contain a topic
    "The user chose these items:\n1. History of the Alps\n2. As Good As It Gets\n3. Evita\n4. Air Force One",
])
def test_an_answer_that_is_not_a_topic_list_is_a_parse_error(answer):
    with pytest.raises(ParseError):
        parse_profile(answer, NEWS)


def test_ranking_is_kept_and_capped():
    p = parse_profile("[topics] weather, health, travel, food, history, culture, economy", NEWS, max_topics=5)
    assert p.topics == ["weather", "health", "travel", "food", "history"]


def test_movie_vocabulary_has_genres_and_no_regions():
    p = parse_profile("[topics] Children's, sci fi, space opera\n[region] California", Vocabulary.movies())
    assert p.topics == ["Children's", "Sci-Fi"] and p.dropped_topics == ["space opera"] and p.regions == []


def test_profiles_fill_the_columns_the_interest_fusion_reads(news_dir, llm, tmp_path):
    from genrecsys.data.profiles import user_profiles
    from genrecsys.data.load import make_split

    out = augment("profile", str(news_dir), tmp_path / "up", llm)
    users = load_dataset(str(out)).users.set_index("user")
    assert list(users.loc["alice", "topics"]) == ["health", "travel"]
    assert list(users.loc["alice", "regions"]) == ["Florida"]
    assert list(users.loc["bob", "topics"]) == ["finance", "economy"] and list(users.loc["bob", "regions"]) == []
    assert users.loc["carol", "topics"] is None  # unparsable: no profile, not a guessed one
    assert list(users.loc["dave", "topics"]) == []  # answered, but nothing in the vocabulary
    split = make_split(load_dataset(str(out)), "loo")
    prof = user_profiles(split)
    alice = split.user_index("alice")
    assert (prof.topics[alice] > 0).sum() == 2 and (prof.regions[alice] > 0).sum() == 1


def test_manifest_counts_parse_failures_and_out_of_vocabulary_topics(news_dir, llm, tmp_path):
    q = load_variant(augment("profile", str(news_dir), tmp_path / "up", llm)).manifest["quality"]["profile"]
    assert q["parse_failure_rate"] == pytest.approx(0.25)  # carol, of 4 users
    assert q["valid_profiles"] == 2 and q["empty_profiles"] == 1
    # kept: health, travel, finance, economy; dropped: gossip, sports stuff, celebrity
    assert q["topics_outside_vocabulary"] == 3 and q["topics_outside_vocabulary_rate"] == pytest.approx(3 / 7)
    assert q["regions_outside_vocabulary"] == 1  # "Miami, Florida": the city is not a state


def test_prompts_list_history_most_recent_first_without_held_out_clicks(news_dir, llm, tmp_path, scripted):
    augment("profile", str(news_dir), tmp_path / "up", llm)
    prompts = [b["messages"][-1]["content"] for b in scripted.bodies]
    assert prompts and not any("HELD" in p for p in prompts)
    (alice,) = [p for p in prompts if "Hospital opens" in p]
    assert alice.index("1. Flights get cheaper") < alice.index("2. Hospital opens")


def test_history_is_capped_and_held_out_items_are_never_visible(news_dir):
    ds = load_dataset(str(news_dir))
    assert user_histories(ds, cap=3)["dave"] == ["N11", "N10", "N9"]
    assert user_histories(ds, holdout_last=0)["carol"] == ["H2", "H1", "N5"]
    assert user_histories(ds)["carol"] == ["N5"]


def test_history_of_mind_excludes_dev_clicks(tmp_path):
    from newsfixtures import MIND

    ds = load_dataset(str(MIND))
    hist = user_histories(ds)
    # U5: history column N2, train clicks N10 and N1; the dev impression's clicks are not there to see
    assert sorted(hist["U5"]) == ["N1", "N10", "N2"]
    # U1 clicked N1 in dev (and read it before): only the dev click is hidden
    assert "N10" in hist["U1"] and "N2" in hist["U1"]
