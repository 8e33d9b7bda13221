import numpy as np

from genrecsys.generative.tokenization import DigitTokenizer
from genrecsys.generative.trie import CodeTrie


def test_item_identifier_is_split_into_word_and_two_digit_subtokens_as_in_the_paper():
    tok = DigitTokenizer(n_items=1682, n_users=943)
    assert tok.item_text(1234) == ["item", "_", "12", "34"]
    assert tok.item_text(7) == ["item", "_", "00", "07"]
    assert [tok.token_text(t) for t in tok.user_tokens(0)] == ["user", "_", "00", "01"]


def test_every_item_has_a_distinct_fixed_length_code_that_decodes_back():
    tok = DigitTokenizer(n_items=250, n_users=10)
    codes = tok.codes[1:]
    assert codes.shape == (250, 2) and len({tuple(c) for c in codes}) == 250
    assert all(tok.decode_item(tok.codes[i].tolist()) == i for i in range(1, 251))


def test_codes_outside_the_catalog_or_with_special_tokens_decode_to_none():
    tok = DigitTokenizer(n_items=250, n_users=10)
    assert tok.decode_item([tok.FIRST_CHUNK + 9, tok.FIRST_CHUNK + 99]) is None  # 999 > 250
    assert tok.decode_item([tok.FIRST_CHUNK, tok.FIRST_CHUNK]) is None  # item 0 is padding
    assert tok.decode_item([2, tok.FIRST_CHUNK]) is None
    assert tok.decode_item([tok.FIRST_CHUNK]) is None  # wrong length


def test_compact_scheme_drops_the_prefix_words():
    tok = DigitTokenizer(n_items=99, n_users=5, prefix_words=False)
    assert tok.item_text(42) == ["42"] and tok.tokens_per_item == 1


def test_trie_allows_exactly_the_continuations_of_catalog_codes():
    tok = DigitTokenizer(n_items=250, n_users=10)
    trie = CodeTrie(tok.codes)
    first = set(trie.next_tokens(()).tolist())
    assert first == {tok.FIRST_CHUNK + d for d in (0, 1, 2)}
    last_prefix = (tok.FIRST_CHUNK + 2,)
    assert set(trie.next_tokens(last_prefix).tolist()) == {tok.FIRST_CHUNK + d for d in range(51)}  # 200..250
    for level, prefixes in enumerate(trie.prefixes):
        rows = trie.prefix_index[1:, level]
        assert np.array_equal(prefixes[rows], tok.codes[1:, :level])


def test_popularity_numbering_writes_the_rank_and_decodes_back_to_the_item():
    numbering = (0, 3, 1, 2)  # item 2 is the most popular, then item 3, then item 1
    tok = DigitTokenizer(n_items=3, n_users=2, numbering=numbering)
    assert tok.item_text(2)[-1] == "01" and tok.item_text(1)[-1] == "03"
    assert [tok.decode_item(tok.codes[i].tolist()) for i in (1, 2, 3)] == [1, 2, 3]
