"""Item tokenization for generative recommenders: every item becomes a short code of
sub-tokens that a decoder can generate.

:class:`DigitTokenizer` is GenRec's textual identifier scheme: ``item_1234`` is split into
``item``, ``_``, ``12``, ``34`` (two-digit chunks, zero-padded so every item of a catalog
has the same number of chunks). Users are written the same way (``user_..``). Another
scheme (e.g. semantic IDs from a residual quantizer) only needs to provide the same
attributes: ``vocab_size``, ``codes`` (one fixed-length code per item) and the special
token ids.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD, BEG, END, MASK = 0, 1, 2, 3
SPECIALS = ("[PAD]", "[BEG]", "[END]", "[MASK]")


@dataclass(frozen=True)
class DigitTokenizer:
    """Vocabulary: 4 specials, the words ``user``, ``item``, ``_``, then 10**chunk digit chunks.

    >>> tok = DigitTokenizer(n_items=1682, n_users=943)
    >>> tok.item_text(1234)
    ['item', '_', '12', '34']
    >>> tok.decode_item(tok.codes[1234].tolist())
    1234
    """

    n_items: int
    n_users: int
    chunk: int = 2
    prefix_words: bool = True  # write "item _" / "user _" before the digits, as the paper does
    # The number written for item i is numbering[i] (a permutation of 1..n_items; index 0 unused);
    # None writes the catalog index itself. Renumbering by popularity makes items that share
    # a first sub-token share something real, which the decoder's first step can use.
    numbering: tuple[int, ...] | None = None

    USER, ITEM, SEP = 4, 5, 6
    FIRST_CHUNK = 7

    @property
    def n_chunks_item(self) -> int:
        return -(-len(str(max(self.n_items, 1))) // self.chunk)

    @property
    def n_chunks_user(self) -> int:
        return -(-len(str(max(self.n_users, 1))) // self.chunk)

    @property
    def vocab_size(self) -> int:
        return self.FIRST_CHUNK + 10 ** self.chunk

    @property
    def code_length(self) -> int:
        return self.n_chunks_item

    def _digits(self, value: int, n_chunks: int) -> list[int]:
        s = str(value).zfill(n_chunks * self.chunk)
        return [self.FIRST_CHUNK + int(s[i:i + self.chunk]) for i in range(0, len(s), self.chunk)]

    @property
    def codes(self) -> np.ndarray:
        """(n_items + 1, code_length) token ids of every item's code; row 0 (padding) unused."""
        cache = self.__dict__.get("_codes")
        if cache is None:
            nums = self.numbering or tuple(range(self.n_items + 1))
            cache = np.array([self._digits(nums[i], self.n_chunks_item) for i in range(self.n_items + 1)], dtype=np.int64)
            object.__setattr__(self, "_codes", cache)
        return cache

    def item_tokens(self, item: int) -> list[int]:
        """Encoder tokens of one item (prefix words + code)."""
        return ([self.ITEM, self.SEP] if self.prefix_words else []) + self.codes[item].tolist()

    def user_tokens(self, user: int) -> list[int]:
        # users are 0-based indices; written 1-based so that no user is "user_0000"
        return ([self.USER, self.SEP] if self.prefix_words else []) + self._digits(user + 1, self.n_chunks_user)

    @property
    def tokens_per_item(self) -> int:
        return self.code_length + (2 if self.prefix_words else 0)

    def decode_item(self, code: list[int]) -> int | None:
        """The item a generated code denotes, or None when it is not a catalog item."""
        if len(code) != self.code_length or any(t < self.FIRST_CHUNK for t in code):
            return None
        value = int("".join(str(t - self.FIRST_CHUNK).zfill(self.chunk) for t in code))
        if not 1 <= value <= self.n_items:
            return None
        if self.numbering is None:
            return value
        inverse = self.__dict__.get("_inverse")
        if inverse is None:
            inverse = {n: i for i, n in enumerate(self.numbering) if i}
            object.__setattr__(self, "_inverse", inverse)
        return inverse.get(value)

    def token_text(self, token: int) -> str:
        if token < len(SPECIALS):
            return SPECIALS[token]
        if token < self.FIRST_CHUNK:
            return {self.USER: "user", self.ITEM: "item", self.SEP: "_"}[token]
        return str(token - self.FIRST_CHUNK).zfill(self.chunk)

    def item_text(self, item: int) -> list[str]:
        return [self.token_text(t) for t in self.item_tokens(item)]


@dataclass(frozen=True, eq=False)
class CodeTokenizer:
    """Items written as given fixed-length codes (e.g. semantic IDs), one token range per level.

    ``item_codes[i, l]`` is item i's level-l code in ``0..sizes[l]-1``; it becomes token
    ``FIRST + offsets[l] + code``, so a code value means something different at each level
    (TIGER's vocabulary). Users, for models that write them (GenRec), are digit chunks of
    ``user + 1`` in a range of their own after the item levels.

    >>> tok = CodeTokenizer(np.array([[0, 0], [1, 0], [1, 1], [0, 2]]), sizes=(2, 3), n_users=5)
    >>> tok.codes[2].tolist(), tok.decode_item(tok.codes[2].tolist()), tok.decode_item([4, 4])
    ([5, 7], 2, None)
    """

    item_codes: np.ndarray  # (n_items + 1, L) level-local codes; row 0 (padding) unused
    sizes: tuple[int, ...]
    n_users: int = 0
    chunk: int = 2

    FIRST = 4  # after PAD, BEG, END, MASK

    def __post_init__(self) -> None:
        codes = np.asarray(self.item_codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != len(self.sizes):
            raise ValueError(f"item codes {codes.shape} do not match {len(self.sizes)} levels")
        if len(codes) > 1 and ((codes[1:] < 0).any() or (codes[1:] >= np.asarray(self.sizes)).any()):
            raise ValueError("an item code lies outside its level's codebook")
        offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        tokens = codes + self.FIRST + offsets
        tokens[0] = PAD
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "_tokens", tokens)
        object.__setattr__(self, "_items", {tuple(c): i for i, c in enumerate(tokens.tolist()) if i})

    @property
    def n_items(self) -> int:
        return len(self._tokens) - 1

    @property
    def code_length(self) -> int:
        return len(self.sizes)

    @property
    def codes(self) -> np.ndarray:
        """(n_items + 1, L) token ids of every item's code; row 0 is padding."""
        return self._tokens

    @property
    def first_user_token(self) -> int:
        return self.FIRST + int(sum(self.sizes))

    @property
    def vocab_size(self) -> int:
        return self.first_user_token + (10 ** self.chunk if self.n_users else 0)

    @property
    def tokens_per_item(self) -> int:
        return self.code_length

    def level_range(self, level: int) -> tuple[int, int]:
        """[start, stop) token ids of one level's codes."""
        start = self.FIRST + int(self.offsets[level])
        return start, start + self.sizes[level]

    def item_tokens(self, item: int) -> list[int]:
        return self._tokens[item].tolist()

    def user_tokens(self, user: int) -> list[int]:
        width = -(-len(str(max(self.n_users, 1))) // self.chunk) * self.chunk
        s = str(user + 1).zfill(width)
        return [self.first_user_token + int(s[i:i + self.chunk]) for i in range(0, width, self.chunk)]

    def decode_item(self, code: list[int]) -> int | None:
        """The item a generated code denotes, or None when it is not a catalog item."""
        return self._items.get(tuple(int(t) for t in code))
