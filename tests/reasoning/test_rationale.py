"""Reading rationales: lenient step splitting, never crashing, and catalog matching that
never invents an item. Also the two RELAND prompt templates."""
from __future__ import annotations

import pytest

from genrecsys.llm.templates import load_template
from genrecsys.reasoning.rationale import TitleCatalog, normalize_title, parse_rationale, split_titles
from reasoningdata import split  # noqa: F401  (fixtures)


@pytest.mark.parametrize("text", [
    "Step 1: Likes tense crime films.\nStep 2: Categories: Crime, Thriller\nItems:\n1. Heat\n2. Ronin",
    "**Step 1:** Likes tense crime films.\n**Step 2:** Categories: Crime, Thriller\nItems:\n1. Heat\n2. Ronin",
    "### Step one - Likes tense crime films.\n### Step two - Categories: Crime, Thriller\nItems: Heat, Ronin",
    "Summary: Likes tense crime films.\nCategories: Crime, Thriller\nItems:\n- Heat\n- Ronin",
    "1. Likes tense crime films.\n2. Categories: Crime, Thriller\nItems: Heat; Ronin",
    "Sure! Step 1: Likes tense crime films. Step 2: Categories: Crime, Thriller\nItems: \"Heat\" and \"Ronin\"",    "Step 1: Likes tense crime films.\nCategories: Crime, Thriller\nItems:\n1. Heat\n2. Ronin",
])
def test_step_formats_small_models_use_all_parse_to_the_same_rationale(text):
    r = parse_rationale(text)
    assert r.parsed and r.text == text
    assert r.step1 == "Likes tense crime films."
    assert r.categories == ("Crime", "Thriller")
    assert r.item_names == ("Heat", "Ronin")


def test_optional_step_zero_is_kept_apart():
    r = parse_rationale("Step 0: crime, heists\nStep 1: Likes heists.\nStep 2: Items:\n1. Heat")
    assert (r.step0, r.step1, r.item_names) == ("crime, heists", "Likes heists.", ("Heat",))


def test_a_long_numbered_list_is_items_not_steps():
    r = parse_rationale("1. Heat\n2. Ronin\n3. Fargo\n4. Casino")
    assert not r.parsed
    assert r.item_names == ("Heat", "Ronin", "Fargo", "Casino")


@pytest.mark.parametrize("text", ["", "   ", "answer-3fa9c21b", "Step 3: something else", "\u202e\x00\ufffd", None])
def test_an_answer_that_parses_to_nothing_is_whole_text_flagged_and_never_raises(text):
    r = parse_rationale(text, fallback="recent: Heat")
    assert not r.parsed and r.item_names == ()
    body = (text or "").strip() or "recent: Heat"
    assert r.step1 == r.step2 == body


def test_step_two_without_its_marker_opens_at_the_first_categories_or_items_header():
    r = parse_rationale("Step 0: heists\nStep 1: Likes heists.\nItems: Heat, Ronin")
    assert r.parsed and (r.step0, r.step1, r.step2) == ("heists", "Likes heists.", "Items: Heat, Ronin")
    assert r.item_names == ("Heat", "Ronin")
    # a header before Step 1 is not Step 2's body
    assert not parse_rationale("Categories: Crime\nStep 1: Likes heists.").parsed


def test_a_missing_step_holds_the_whole_answer():
    text = "Step 1:\nThe user likes 1. Heat (1995), 2. Ronin"
    r = parse_rationale(text)
    assert not r.parsed and r.step1.startswith("The user likes") and r.step2 == text


@pytest.fixture
def catalog():
    titles = {1: "Heat", 2: "Usual Suspects, The", 3: "Hamlet", 4: "Hamlet", 5: "Alien 3", 6: "Godfather, The",
              7: "Wallace & Gromit: The Best of Aardman Animation", 8: "Amélie"}
    years = {1: "1995", 2: "1995", 3: "1990", 4: "1996", 5: "1992", 6: "1972", 7: "1996", 8: "2001"}
    return TitleCatalog(titles, years)


@pytest.mark.parametrize("name,item", [
    ("Heat", 1), ("heat (1995)", 1), ("HEAT", 1), ("The Usual Suspects", 2), ("Usual Suspects, The (1995)", 2),
    ("Amelie", 8), ("Wallace and Gromit: The Best of Aardman Animation", 7),
    ("Heat - a tense heist film", 1), ("Heat (1995) [Action, Crime]", 1), ("Heat: great", 1),
    ("The Godfathr", 6), ("Usual Suspect", 2),  # typos, within the fuzzy cutoff
    ("Hamlet (1996)", 4), ("Hamlet", 3),  # a year picks among equal titles; else the lowest index
])
def test_titles_match_ignoring_case_year_articles_accents_and_small_typos(catalog, name, item):
    assert catalog.match(name) == item


@pytest.mark.parametrize("name", ["Alien 4", "Avengers: Endgame", "Hate", "", "The", "1."])
def test_names_not_in_the_catalog_are_not_matched(catalog, name):
    assert catalog.match(name) is None


def test_match_all_reports_unmatched_names_and_never_invents(catalog):
    matched, unmatched = catalog.match_all(["Heat", "Avengers: Endgame", "heat (1995)", "Alien 4",
                                            "Heat, Hamlet, Usual Suspects, The, Made Up Movie"])
    assert matched == (1, 3, 2)
    assert unmatched == ("Avengers: Endgame", "Alien 4", "Made Up Movie")
    assert set(matched) <= set(catalog.titles)


def test_split_titles_keeps_a_trailing_article_with_its_title():
    assert split_titles("Heat, Godfather, The; Ronin\nAmelie") == ["Heat", "Godfather, The", "Ronin", "Amelie"]
    assert normalize_title("Godfather, The (1972)") == normalize_title("the godfather") == "godfather"


def test_catalog_from_split_lists_the_split_items_with_titles_and_years(split):
    cat = TitleCatalog.from_split(split)
    assert len(cat.titles) == split.n_items
    heat = next(i for i in range(1, split.n_items + 1) if split.item_ids[i] == "i17")
    assert cat.titles[heat] == "Heat" and cat.display(heat) == "Heat (1987)"
    assert cat.match("The Usual Suspects") == next(i for i in range(1, split.n_items + 1) if split.item_ids[i] == "i20")


def test_cot_template_asks_for_the_steps_and_fences_the_history():
    t = load_template("reland_cot")
    assert t.name == "reland_cot" and t.version and set(t.variables) == {"history", "n_items"}
    _, user = t.render({"history": ["Heat (1995)", "Ronin (1998)"], "n_items": 5})
    body = user["content"]
    assert "Step 1:" in body and "Step 2:" in body and "Step 0:" not in body
    assert body.index("<<<history ") < body.index("1. Heat (1995)") < body.index("<<<end ")
    assert "Items: 5 titles" in body
    _, user = t.render({"history": ["Heat"], "n_items": 3, "condense": True, "categories": ["Crime", "Drama"]})
    assert "Step 0:" in user["content"] and "Crime, Drama" in user["content"]


def test_direct_template_asks_for_items_without_reasoning_steps():
    t = load_template("reland_direct")
    _, user = t.render({"history": ["Heat (1995)"], "n_items": 4})
    assert "Step" not in user["content"] and "Recommend 4 titles" in user["content"]
