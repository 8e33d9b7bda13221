from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genrecsys.data.impressions import impression_split
from genrecsys.data.itemtext import ItemTextConfig, item_inputs, load_tokenizer
from genrecsys.data.mind import load_mind
from genrecsys.data.schema import Dataset
from genrecsys.data.splits import leave_one_out
from genrecsys.errors import GenrecsysError
from newsfixtures import MIND, TOKENIZER


@pytest.fixture(scope="module")
def split():
    return impression_split(load_mind(MIND))


def _cfg(**kw):
    return ItemTextConfig(tokenizer=str(TOKENIZER), **kw)


def _row(split, inputs, news_id):
    return inputs.tokens[list(split.item_ids).index(news_id)]


def test_title_pieces_then_category_and_subcategory_special_tokens(split):
    inputs = item_inputs(split, _cfg(title_tokens=12, categories=1, subcategories=1))
    assert inputs.tokens.shape == (split.n_items + 1, 14)
    assert (inputs.tokens[0] == 0).all()  # the padding item
    tok = load_tokenizer(TOKENIZER)
    pieces = tok("When to cook every dish for thanksgiving dinner", add_special_tokens=False)["input_ids"]
    row = _row(split, inputs, "N7")
    title = row[inputs.segments["title"]]
    assert (title > 0).sum() == len(pieces) == 9  # "thanks ##giving" are two pieces
    assert title.max() <= inputs.n_words
    cat, sub = row[inputs.segments["category"]], row[inputs.segments["subcategory"]]
    assert inputs.n_words < cat[0] <= inputs.n_words + inputs.n_categories < sub[0] < inputs.vocab_size
    assert inputs.n_categories == 3 and inputs.n_subcategories == 6


def test_same_category_same_token(split):
    inputs = item_inputs(split, _cfg())
    c = inputs.segments["category"]
    assert _row(split, inputs, "N1")[c][0] == _row(split, inputs, "N3")[c][0] != _row(split, inputs, "N4")[c][0]


def test_vocabulary_is_compact_and_titles_are_truncated(split):
    inputs = item_inputs(split, _cfg(title_tokens=3))
    title = inputs.tokens[:, inputs.segments["title"]]
    assert set(np.unique(title)) - {0} == set(range(1, inputs.n_words + 1))  # every id used, no gaps
    assert (title[1:] > 0).sum(1).max() == 3


def test_abstract_is_optional(split):
    assert item_inputs(split, _cfg()).segments["abstract"] == slice(20, 20)
    inputs = item_inputs(split, _cfg(abstract_tokens=8))
    abstract = _row(split, inputs, "N4")[inputs.segments["abstract"]]
    assert (abstract > 0).sum() == len("markets closed higher on friday .".split())
    assert (_row(split, inputs, "N3")[inputs.segments["abstract"]] == 0).all()  # empty abstract
    assert inputs.texts[list(split.item_ids).index("N4")] == "Stocks rise as rates hold. Markets closed higher on Friday."


def test_multi_valued_genres_give_one_token_each():
    inter = pd.DataFrame({"user": ["u1"] * 3, "item": ["m1", "m2", "m3"], "timestamp": [1, 2, 3]})
    items = pd.DataFrame({"item": ["m1", "m2"], "title": ["Toy Story", "Heat"], "genres": ["Animation|Comedy", "Crime"]})
    split = leave_one_out(Dataset("ml", inter, items))
    inputs = item_inputs(split, _cfg(categories=3))
    cats = inputs.tokens[:, inputs.segments["category"]]
    assert (cats[1] > 0).sum() == 2 and (cats[2] > 0).sum() == 1
    assert (inputs.tokens[3] == 0).all()  # m3 has no row in the item table: empty input


def test_precomputed_vectors_come_from_an_item_column():
    inter = pd.DataFrame({"user": ["u1"] * 3, "item": ["a", "b", "c"], "timestamp": [1, 2, 3]})
    items = pd.DataFrame({"item": ["a", "b", "c"], "title": ["x", "y", "z"],
                          "image": [[1.0, 2.0], None, [0.5, 0.5]]})
    split = leave_one_out(Dataset("v", inter, items))
    inputs = item_inputs(split, _cfg(vector_column="image"))
    assert inputs.vector.shape == (4, 2)
    assert inputs.vector[1].tolist() == [1.0, 2.0] and inputs.vector[2].tolist() == [0.0, 0.0]
    with pytest.raises(GenrecsysError, match="no vector column 'img'"):
        item_inputs(split, _cfg(vector_column="img"))


def test_inputs_are_cached_on_the_split(split):
    assert item_inputs(split, _cfg()) is item_inputs(split, _cfg())


@pytest.mark.integration
def test_the_embedded_minilm_tokenizer_is_bert_uncased_wordpiece(ml100k_cache):
    tok = load_tokenizer(None, ml100k_cache)
    assert tok.tokenize("Here's exactly when to cook every dish for Thanksgiving") == \
        ["here", "'", "s", "exactly", "when", "to", "cook", "every", "dish", "for", "thanksgiving"]
    assert tok.vocab_size == 30522
