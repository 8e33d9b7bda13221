from __future__ import annotations

import shutil

import numpy as np
import pytest

from genrecsys.data.mind import find_parts, format_mind_stats, load_mind, mind_stats, read_behaviors
from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError
from newsfixtures import MIND, TOKENIZER


@pytest.fixture(scope="module")
def mind():
    return load_mind(MIND)


def test_history_column_comes_first_then_clicks_in_time_order(mind):
    u1 = mind.interactions[mind.interactions["user"] == "U1"]
    # history N1 N3, then the clicks of train impressions 1 and 4, then dev impressions 1 and 7
    assert u1["item"].tolist() == ["N1", "N3", "N2", "N10", "N10", "N1"]
    assert u1["timestamp"].is_monotonic_increasing


def test_impressions_keep_every_shown_item_with_its_label(mind):
    imp = mind.impressions
    first = imp[imp["impression"] == "train/2"]
    assert first["item"].tolist() == ["N6", "N5", "N8", "N9", "N2"]
    assert first["label"].tolist() == [0, 1, 0, 0, 0]
    assert set(imp["part"]) == {"train", "dev"}
    assert len(imp) == 59


def test_users_carry_their_history_length(mind):
    lengths = dict(zip(mind.users["user"], mind.users["history_length"]))
    assert lengths == {"U1": 2, "U2": 3, "U3": 0, "U4": 6, "U5": 1, "U6": 1}


def test_table1_statistics_match_hand_counts(mind):
    from genrecsys.data.itemtext import load_tokenizer

    stats = mind_stats(mind, load_tokenizer(TOKENIZER))
    assert {k: stats[k] for k in ("news", "users", "new_users", "impressions", "positives", "negatives",
                                  "categories", "subcategories")} == {
        "news": 12, "users": 6, "new_users": 5, "impressions": 16, "positives": 18, "negatives": 41,
        "categories": 3, "subcategories": 6}
    assert stats["new_user_ratio"] == pytest.approx(5 / 6)
    assert stats["news_per_user"] == pytest.approx(13 / 6)
    assert stats["news_per_new_user"] == pytest.approx(7 / 5)
    assert stats["tokens_per_title"] > 0 and stats["tokens_per_abstract"] > 0
    text = format_mind_stats(stats)
    assert "| #news | 12 |" in text and "| #new user ratio | 0.83 |" in text and text.endswith("\n")


def test_saved_dataset_keeps_its_impressions(mind, tmp_path):
    again = Dataset.load(mind.save(tmp_path / "mind"))
    assert again.impressions is not None and again.impressions.equals(mind.impressions)


def test_one_directory_with_the_two_files_is_one_train_part(tmp_path):
    for f in ("news.tsv", "behaviors.tsv"):
        shutil.copy(MIND / "train" / f, tmp_path / f)
    ds = load_mind(tmp_path)
    assert set(ds.impressions["part"]) == {"train"}


def test_official_directory_names_are_recognised(tmp_path):
    shutil.copytree(MIND / "train", tmp_path / "MINDsmall_train")
    shutil.copytree(MIND / "dev", tmp_path / "MINDsmall_dev")
    assert sorted(find_parts(tmp_path)) == ["dev", "train"]


def test_datasets_registry_and_directory_detection_load_mind():
    from genrecsys.data.load import load_dataset

    assert load_dataset("mind", str(MIND)).impressions is not None
    assert load_dataset(str(MIND)).impressions is not None


@pytest.mark.parametrize("fname, line, message", [
    ("news.tsv", "N99\tsports\tfootball\ttitle\tabstract\turl\t[]\n", "expected 8 tab-separated fields"),
    ("behaviors.tsv", "9\tU9\t11/11/2019 9:05:58 AM\t\tN1-2 N2-0\n", "bad impression entry 'N1-2'"),
    ("behaviors.tsv", "9\tU9\tyesterday\t\tN1-1 N2-0\n", "bad time 'yesterday'"),
    ("behaviors.tsv", "9\tU9\t11/11/2019 9:05:58 AM\t\tN77-1 N2-0\n", "missing from news.tsv"),
])
def test_malformed_files_raise_one_clear_error(tmp_path, fname, line, message):
    for f in ("news.tsv", "behaviors.tsv"):
        shutil.copy(MIND / "train" / f, tmp_path / f)
    with (tmp_path / fname).open("a") as fh:
        fh.write(line)
    with pytest.raises(GenrecsysError, match=message):
        load_mind(tmp_path)


def test_unlabelled_impressions_read_as_unknown(tmp_path):
    (tmp_path / "behaviors.tsv").write_text("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN2 N3\n")
    b = read_behaviors(tmp_path / "behaviors.tsv")
    assert b["labels"][0] == [-1, -1] and b["shown"][0] == ["N2", "N3"]
    assert b["timestamp"][0] == int(np.datetime64("2019-11-11T09:05:58", "s").astype(np.int64))
