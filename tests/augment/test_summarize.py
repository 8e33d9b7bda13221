"""The news summarizer: lenient title parsing, the variant it writes, failures kept honest."""
from __future__ import annotations

import pandas as pd
import pytest

from augmentdata import llm, news_dir, scripted, tree_digest  # noqa: F401  (fixtures)
from genrecsys.augment import augment, load_variant, read_artefacts
from genrecsys.augment.summarize import parse_title
from genrecsys.data.load import load_dataset
from genrecsys.llm.parse import ParseError


@pytest.mark.parametrize("answer,title", [
    ("[Heat: a heist thriller]", "Heat: a heist thriller"),
    ("Sure! Here is the new title:\n\n**Heat: a heist thriller**", "Heat: a heist thriller"),
    ('Title: "Heat: a heist thriller"', "Heat: a heist thriller"),
    ("Enhanced Title - Heat: a heist thriller.", "Heat: a heist thriller"),
    ("Heat: a heist thriller\nThis title names the genre.", "Heat: a heist thriller"),
])
def test_small_model_title_formats_are_accepted(answer, title):
    assert parse_title(answer) == title


@pytest.mark.parametrize("answer", ["", "   \n ", "[new title]", "[Heat: a heist thr",
                                    "<<<data item>>> title: Heat", " ".join(["word"] * 40)])
def test_answers_without_a_title_are_parse_errors_never_guesses(answer):
    with pytest.raises(ParseError):
        parse_title(answer)


def test_variant_replaces_titles_keeps_originals_and_leaves_the_input_untouched(news_dir, llm, tmp_path):
    before = tree_digest(news_dir)
    out = augment("summarize", str(news_dir), tmp_path / "ns", llm)
    assert tree_digest(news_dir) == before
    items = load_dataset(str(out)).items.set_index("item")
    assert items.loc["N1", "title"] == "City hospital adds a new wing"
    assert items.loc["N2", "title"] == "Winter airfares drop"
    assert items.loc["N1", "title_original"] == "Hospital opens new wing"
    assert (items["title_original"] == pd.read_parquet(news_dir / "items.parquet").set_index("item")["title"]).all()


def test_unparseable_answer_is_counted_and_the_item_keeps_its_title(news_dir, llm, tmp_path, scripted):
    out = augment("summarize", str(news_dir), tmp_path / "ns", llm)
    v = load_variant(out)
    assert v.dataset.items.set_index("item").loc["N3", "title"] == "Stocks rally on rate hopes"
    step = v.manifest["steps"][0]
    assert step["parse_failures"] == 1 and step["rows"] == 13
    assert v.manifest["quality"]["summarize"]["parse_failure_rate"] == pytest.approx(1 / 13, abs=1e-6)
    assert step["reasks"] == 1  # re-asked once, then given up
    (art,) = [a for a in read_artefacts(out) if a["id"] == "N3"]
    assert art["text"] == "[new title]" and art["error"].startswith("parse:") and art["parsed"] is None


def test_rerun_is_answered_from_the_cache_with_zero_backend_calls(news_dir, llm, tmp_path, scripted):
    first = load_variant(augment("summarize", str(news_dir), tmp_path / "a", llm)).manifest
    sent = len(scripted.bodies)
    again = load_variant(augment("summarize", str(news_dir), tmp_path / "b", llm)).manifest
    assert len(scripted.bodies) == sent
    assert again["backend_calls"] == 0 and again["cache_hits"] == first["backend_calls"] == 14  # 13 items + 1 re-ask
    assert again["cost"] == 0 and again["cost_total"] == pytest.approx(first["cost_total"])
    assert load_dataset(str(tmp_path / "a")).items.equals(load_dataset(str(tmp_path / "b")).items)
