"""Prefix trie over fixed-length item codes: which next tokens keep a partial code on the
way to a real catalog item. Used for constrained beam search and exact full-catalog
scoring (every item's log-probability, level by level over the valid prefixes)."""
from __future__ import annotations

import numpy as np


class CodeTrie:
    """Built from ``codes`` (n_items + 1, L), row 0 being padding.

    ``prefixes[l]`` are the distinct valid prefixes of length ``l`` (shape (P_l, l)), and
    ``prefix_index[i, l]`` is the row of item ``i``'s length-``l`` prefix in ``prefixes[l]``.

    >>> t = CodeTrie(np.array([[0, 0], [7, 8], [7, 9], [8, 7]]))
    >>> t.allowed([(), (7,), (8,)], vocab_size=10).astype(int).tolist()
    [[0, 0, 0, 0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]]
    """

    def __init__(self, codes: np.ndarray):
        codes = np.asarray(codes)[1:]
        self.length = codes.shape[1]
        self.prefixes: list[np.ndarray] = []
        index = np.zeros((len(codes) + 1, self.length), dtype=np.int64)
        self._next: dict[tuple[int, ...], np.ndarray] = {}
        for level in range(self.length):
            uniq, inv = np.unique(codes[:, :level], axis=0, return_inverse=True) if level else (np.zeros((1, 0), np.int64), np.zeros(len(codes), np.int64))
            self.prefixes.append(uniq)
            index[1:, level] = inv.reshape(-1)
            inv = inv.reshape(-1)
            order = np.argsort(inv, kind="stable")
            groups = np.split(codes[order, level], np.cumsum(np.bincount(inv, minlength=len(uniq)))[:-1])
            for p, nxt in enumerate(groups):
                self._next[tuple(uniq[p].tolist())] = np.unique(nxt)
        self.prefix_index = index
        self.items_by_code = {tuple(c.tolist()): i + 1 for i, c in enumerate(codes)}

    def next_tokens(self, prefix: tuple[int, ...]) -> np.ndarray:
        return self._next.get(tuple(prefix), np.zeros(0, dtype=np.int64))

    def allowed(self, prefixes: list[tuple[int, ...]], vocab_size: int) -> np.ndarray:
        """(P, vocab_size) boolean mask of the tokens that may follow each prefix."""
        mask = np.zeros((len(prefixes), vocab_size), dtype=bool)
        for row, p in enumerate(prefixes):
            mask[row, self.next_tokens(p)] = True
        return mask

    def final_items(self, prefix: tuple[int, ...], vocab_size: int) -> np.ndarray:
        """(vocab_size,) the item reached by appending each token to a length L-1 prefix (0: none)."""
        cache = self.__dict__.setdefault("_final", {})
        out = cache.get(prefix)
        if out is None:
            out = np.zeros(vocab_size, dtype=np.int64)
            for t in self.next_tokens(prefix):
                out[t] = self.item(tuple(prefix) + (int(t),)) or 0
            cache[prefix] = out
        return out

    def item(self, code: tuple[int, ...]) -> int | None:
        return self.items_by_code.get(tuple(code))


def scoring_levels(trie: CodeTrie, vocab: int) -> list[tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]]:
    """Per level: the prefixes with >= 2 valid continuations (P, level), their allowed
    next tokens (P, V), and (row in those prefixes, item) for the items below them."""
    levels = []
    for level, prefixes in enumerate(trie.prefixes):
        allowed = trie.allowed([tuple(p) for p in prefixes.tolist()], vocab)  # (P_all, V)
        multi = np.flatnonzero(allowed.sum(1) >= 2)
        row_of = np.full(len(prefixes), -1)
        row_of[multi] = np.arange(len(multi))
        rows = row_of[trie.prefix_index[1:, level]]
        items = np.flatnonzero(rows >= 0) + 1
        levels.append((prefixes[multi], allowed[multi], (rows[rows >= 0], items)))
    return levels

