"""Parsers on the kinds of answers small local models and chat servers really give."""
from __future__ import annotations

import pickle

import pytest
from pydantic import BaseModel

from genrecsys.llm.parse import (
    ParseError,
    extract_json,
    match_vocabulary,
    parse_bracketed,
    parse_bracketed_value,
    parse_json,
    parse_numbered_list,
    split_list,
    strip_code_fences,
)


class NewsSummary(BaseModel):
    title: str
    abstract: str
    category: str


# ------------------------------------------------------------------------------ fences

def test_strip_code_fences_returns_first_block_without_language_tag():
    text = 'Here is the JSON:\n```json\n{"a": 1}\n```\nand another:\n```\n{"b": 2}\n```'
    assert strip_code_fences(text) == '{"a": 1}'


def test_strip_code_fences_leaves_unfenced_text_alone():
    assert strip_code_fences("just prose, no fences") == "just prose, no fences"


def test_strip_code_fences_unterminated_fence_returns_everything_after_it():
    assert strip_code_fences('Sure!\n```json\n{"title": "Heat",\n"abs') == '{"title": "Heat",\n"abs'


# -------------------------------------------------------------------------------- JSON

def test_extract_json_ignores_prose_and_code_fences():
    text = ('Sure! Here is the summary you asked for:\n\n```json\n'
            '{"title": "Stocks rally", "abstract": "Markets rose {sharply} today.", "category": "finance"}\n'
            '```\n\nLet me know if you need anything else!')
    assert extract_json(text) == {"title": "Stocks rally", "abstract": "Markets rose {sharply} today.",
                                  "category": "finance"}


def test_extract_json_first_of_two_objects_wins():
    text = '{"category": "sports"}\nOr maybe:\n{"category": "health"}'
    assert extract_json(text) == {"category": "sports"}


def test_extract_json_skips_braces_in_prose_before_the_answer():
    text = 'Fill in {title} and {category}. Answer: {"title": "Heat", "category": "movies"}'
    assert extract_json(text) == {"title": "Heat", "category": "movies"}


def test_extract_json_skips_an_echoed_template_that_is_not_json():
    text = 'Format: {"title": <title>, "category": <one word>}\n{"title": "Heat", "category": "movies"}'
    assert extract_json(text) == {"title": "Heat", "category": "movies"}


def test_extract_json_tolerates_trailing_commas_outside_strings_only():
    text = '{"tags": ["a", "b",], "note": "x, }",}'
    assert extract_json(text) == {"tags": ["a", "b"], "note": "x, }"}


def test_extract_json_respects_escaped_quotes_and_brackets_in_strings():
    text = r'{"title": "He said \"}\" then left", "n": 1} trailing'
    assert extract_json(text) == {"title": 'He said "}" then left', "n": 1}


def test_extract_json_accepts_python_style_single_quoted_dict():
    text = "Output: {'title': 'Heat', 'year': 1995, 'remake': False, 'tags': ['crime',],}"
    assert extract_json(text) == {"title": "Heat", "year": 1995, "remake": False, "tags": ["crime"]}


def test_extract_json_never_evaluates_python_and_rejects_what_json_cannot_express():
    with pytest.raises(ParseError):
        extract_json("{'x': __import__('os').system('echo hacked')}")
    with pytest.raises(ParseError):
        extract_json("{1, 2, 3}")  # a set, not a dict


def test_extract_json_reports_truncation_when_cut_off():
    text = '```json\n{"title": "Stocks rally", "abstract": "Markets rose sharply today after the cen'
    with pytest.raises(ParseError, match="cut off: unterminated string") as info:
        extract_json(text)
    assert info.value.truncated
    with pytest.raises(ParseError, match="cut off: unbalanced braces") as info:
        extract_json('{"title": "Heat", "tags": ["crime"]')
    assert info.value.truncated


def test_extract_json_does_not_return_a_fragment_of_a_truncated_object():
    text = '{"item": {"title": "Heat"}, "reasons": ["a gripping'
    with pytest.raises(ParseError) as info:
        extract_json(text)
    assert info.value.truncated


def test_extract_json_without_any_object_is_not_truncation():
    with pytest.raises(ParseError, match="no JSON object found") as info:
        extract_json("I'm sorry, I cannot help with that.")
    assert not info.value.truncated


def test_extract_json_malformed_object_names_the_json_error():
    with pytest.raises(ParseError, match="invalid JSON object") as info:
        extract_json('{"title": "Heat" "category": "movies"}')
    assert not info.value.truncated


def test_extract_json_list_kind_finds_the_array():
    text = 'Recommended ids: [12, 7, 31] (most relevant first)'
    assert extract_json(text, kind=list) == [12, 7, 31]


# --------------------------------------------------------------------- JSON + schema

def test_parse_json_validates_into_the_model():
    text = '```json\n{"title": "Heat", "abstract": "A heist thriller.", "category": "movies"}\n```'
    assert parse_json(text, NewsSummary) == NewsSummary(title="Heat", abstract="A heist thriller.",
                                                         category="movies")


def test_parse_json_names_the_missing_field():
    with pytest.raises(ParseError, match=r"^field 'category': Field required$") as info:
        parse_json('{"title": "Heat", "abstract": "A heist thriller."}', NewsSummary)
    assert not info.value.truncated


def test_parse_json_summarizes_each_wrong_field_on_one_line():
    text = '{"title": 7, "abstract": "x", "category": ["movies", "crime"]}'
    with pytest.raises(ParseError) as info:
        parse_json(text, NewsSummary)
    assert str(info.value) == ("field 'title': Input should be a valid string; "
                               "field 'category': Input should be a valid string")


def test_parse_error_keeps_truncated_flag_through_pickle():
    err = pickle.loads(pickle.dumps(ParseError("JSON cut off: unterminated string", truncated=True)))
    assert str(err) == "JSON cut off: unterminated string" and err.truncated


# -------------------------------------------------------------------- bracketed fields

def test_parse_bracketed_reads_genre_fields_in_several_layouts():
    text = ("Based on the history, here is the profile.\n"
            "**[Topics]**: health, travel\n"
            "[region]: [California]\n"
            "[Interests]\nhiking,\nvegan cooking\n")
    assert parse_bracketed(text, ["topics", "region", "interests"]) == {
        "topics": "health, travel", "region": "California", "interests": "hiking,\nvegan cooking"}


def test_parse_bracketed_splits_fields_written_on_one_line():
    assert parse_bracketed("[topics] sports [region] Texas", ["topics", "region"]) == {
        "topics": "sports", "region": "Texas"}


def test_parse_bracketed_prefers_a_filled_value_over_an_echoed_empty_one():
    text = "```\n[topics]:\n[region]:\n```\n\n[topics]: finance\n[region]: Ohio"
    assert parse_bracketed(text, ["topics", "region"]) == {"topics": "finance", "region": "Ohio"}


def test_parse_bracketed_keeps_brackets_inside_a_value():
    assert parse_bracketed("[summary] A film [sic] about heists", ["summary"]) == {
        "summary": "A film [sic] about heists"}


def test_parse_bracketed_names_the_missing_field():
    with pytest.raises(ParseError, match=r"missing bracketed field \[region\]") as info:
        parse_bracketed("[topics] health", ["topics", "region"])
    assert not info.value.truncated


def test_parse_bracketed_flags_a_label_cut_off_mid_bracket():
    with pytest.raises(ParseError) as info:
        parse_bracketed("[topics] health\n[reg", ["topics", "region"])
    assert info.value.truncated


def test_parse_bracketed_value_returns_first_non_empty_group():
    assert parse_bracketed_value("Sure! [] The new title is:\n[ Heat (1995): LA heist thriller ]") == \
        "Heat (1995): LA heist thriller"


def test_parse_bracketed_value_fails_without_brackets_and_flags_an_unclosed_one():
    with pytest.raises(ParseError, match="no bracketed value") as info:
        parse_bracketed_value("Heat (1995): LA heist thriller")
    assert not info.value.truncated
    with pytest.raises(ParseError) as info:
        parse_bracketed_value("Enhanced title: [Heat (1995): a Los Angeles heist thri")
    assert info.value.truncated


# ------------------------------------------------------------------------------- lists

def test_parse_numbered_list_accepts_all_numbering_styles():
    text = ('Here are my picks:\n1. **Heat**\n2) "Ronin"\n(3) Collateral\n4: \u201cThief\u201d\n'
            'Rated 4.5 stars overall.')
    assert parse_numbered_list(text) == ["Heat", "Ronin", "Collateral", "Thief"]


def test_parse_numbered_list_ignores_bullets_when_numbered_lines_exist():
    text = "1. Heat\n   - a heist film\n2. Ronin\n   - car chases"
    assert parse_numbered_list(text) == ["Heat", "Ronin"]


def test_parse_numbered_list_falls_back_to_bullets():
    assert parse_numbered_list("- Heat\n* Ronin\n\u2022 Thief") == ["Heat", "Ronin", "Thief"]


def test_parse_numbered_list_too_few_items_fails():
    with pytest.raises(ParseError, match="at least 3"):
        parse_numbered_list("1. Heat\n2. Ronin", min_items=3)
    with pytest.raises(ParseError, match="expected a numbered list, found none"):
        parse_numbered_list("I recommend Heat and Ronin.")


def test_split_list_splits_on_separators_and_keeps_case():
    assert split_list("Health, travel and food;\nFinance.") == ["Health", "travel", "food", "Finance"]


def test_split_list_drops_numbering_and_empties():
    assert split_list("1. sports,, 2) U.S. politics\n- weather") == ["sports", "U.S. politics", "weather"]
    assert split_list("1.5 stars, 3D printing") == ["1.5 stars", "3D printing"]


# -------------------------------------------------------------------------- vocabulary

MIND_TOPICS = ["news", "sports", "lifestyle", "finance", "foodanddrink", "travel", "weather", "autos",
               "health", "video", "music", "movies", "tv", "entertainment", "kids", "middleeast",
               "northamerica", "games", "technology"]


def test_match_vocabulary_ignores_case_spacing_and_punctuation():
    matched, unmatched = match_vocabulary(["  Sports!", "Food & Drink", "north-america", "TV"], MIND_TOPICS)
    assert matched == ["sports", "foodanddrink", "northamerica", "tv"]
    assert unmatched == []


def test_match_vocabulary_finds_entry_as_whole_word_phrase():
    matched, unmatched = match_vocabulary(["Technology news", "sportswear"], ["technology", "sports"])
    assert matched == ["technology"]
    assert unmatched == ["sportswear"]  # "sports" is not a whole word of "sportswear"


def test_match_vocabulary_dedupes_in_first_seen_order_and_returns_raw_unmatched():
    matched, unmatched = match_vocabulary(["Travel", "health", "TRAVEL", "Celebrity Gossip"], MIND_TOPICS)
    assert matched == ["travel", "health"]
    assert unmatched == ["Celebrity Gossip"]
