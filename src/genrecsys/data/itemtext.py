"""Item-side input of the multi-modal news encoder (GENRE Fig. 2, §4.1 "News Features").

Each item becomes one row of token ids in a single vocabulary: its title's WordPiece
tokens, optionally its abstract's, then its category and subcategory as special tokens
that are not tokenized (multi-valued cells such as ML-100K's ``Action|Comedy`` give one
token per value). An optional precomputed per-item vector (an image or text embedding,
from an item-table column of float lists) rides along for a learnable projection.

WordPiece ids are remapped to a compact vocabulary of the pieces that occur in the
dataset (so a model's embedding table has a few thousand rows, not 30,522). The
tokenizer is any Hugging Face tokenizer directory, by default the uncased BERT
WordPiece of the embedded all-MiniLM-L6-v2 (`genrecsys.assets.embedded_text_encoder`),
the same vocabulary as GENRE's BERT tokenizer.

>>> # inputs = item_inputs(split, ItemTextConfig(abstract_tokens=50))
>>> # inputs.tokens.shape    -> (n_items + 1, 20 + 50 + 3 + 2); row 0 is padding
>>> #   (+ one row per synthetic item of an augmented variant, after the real items)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genrecsys.errors import GenrecsysError


@dataclass
class ItemTextConfig:
    tokenizer: str | None = None  # Hugging Face tokenizer directory; None: embedded all-MiniLM-L6-v2
    title_tokens: int = 20  # WordPiece tokens kept per title
    abstract_tokens: int = 0  # 0: no abstract (GENRE's default input: title, category, image)
    categories: int = 3  # category tokens kept per item (multi-valued cells split on '|')
    subcategories: int = 2
    title_column: str = "title"
    abstract_column: str = "abstract"
    category_columns: tuple[str, ...] = ("category", "genres")  # the first one present is used
    subcategory_columns: tuple[str, ...] = ("subcategory",)
    vector_column: str | None = None  # item-table column of per-item float vectors (e.g. image embeddings)

    def __post_init__(self) -> None:
        if self.title_tokens < 1 or min(self.abstract_tokens, self.categories, self.subcategories) < 0:
            raise GenrecsysError("text.title_tokens >= 1 and non-negative abstract_tokens, categories, subcategories are required")


@dataclass
class ItemInputs:
    tokens: np.ndarray  # (I+1[+Syn], S) int64 ids in one vocabulary, 0 = padding; row 0 = the padding item
    segments: dict[str, slice]  # columns of `tokens` holding title / abstract / category / subcategory
    vocab_size: int  # rows an embedding table over `tokens` needs (padding included)
    n_words: int  # word pieces are ids 1..n_words; categories and subcategories follow
    n_categories: int
    n_subcategories: int
    texts: list[str]  # per item row: title (and abstract when used), for a pretrained text encoder
    vector: np.ndarray | None = None  # (I+1, V) float32


def load_tokenizer(path: str | Path | None = None, cache_dir: str | Path | None = None):
    """A Hugging Face tokenizer from `path`, else the embedded all-MiniLM-L6-v2 WordPiece."""
    from transformers import AutoTokenizer

    if path is None:
        from genrecsys.assets import embedded_text_encoder
        from genrecsys.data.movielens import default_cache_dir

        path = embedded_text_encoder(cache_dir or default_cache_dir())
    p = Path(path)
    if not p.is_dir():
        raise GenrecsysError(f"tokenizer directory not found: {p}")
    return AutoTokenizer.from_pretrained(str(p))


def _column(items: pd.DataFrame, names: tuple[str, ...] | str) -> pd.Series | None:
    for name in (names,) if isinstance(names, str) else names:
        if name in items.columns:
            return items[name]
    return None


def _values(cell) -> list[str]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    if isinstance(cell, str):
        return [v.strip() for v in cell.split("|") if v.strip()]
    return [str(v).strip() for v in cell if str(v).strip()]


def _special(cells: list[list[str]], width: int, offset: int) -> tuple[np.ndarray, int]:
    """Per-item special-token ids (sorted value vocabulary, ids offset+1...), left-aligned."""
    vocab = {v: i + 1 for i, v in enumerate(sorted({v for c in cells for v in c}))}
    out = np.zeros((len(cells), width), dtype=np.int64)
    for row, values in enumerate(cells):
        ids = [vocab[v] + offset for v in values[:width]]
        out[row, :len(ids)] = ids
    return out, len(vocab)


def item_inputs(split, cfg: ItemTextConfig | None = None, cache_dir: str | Path | None = None,
                tokenizer=None) -> ItemInputs:
    """Token rows for every item of `split` (row i = item index i), cached on the split.

    When the dataset carries synthetic items (an augmented variant, see
    `genrecsys.data.augmented`), they follow as rows n_items+1 ..., encoded from their own
    title / abstract / category; without them the rows are exactly the real items'."""
    cfg = cfg or ItemTextConfig()
    key = ("item_inputs", repr(cfg))
    if key in split.meta:
        return split.meta[key]
    table = split.dataset.items.drop_duplicates("item").set_index("item")
    table = table.reindex(split.item_ids[1:])  # items absent from the table get empty text
    table = _with_synthetic_rows(table, split, cfg)
    n_items = len(table)  # real items, then synthetic ones
    n_rows = n_items + 1
    tok = tokenizer if tokenizer is not None else load_tokenizer(cfg.tokenizer, cache_dir or split.meta.get("cache_dir"))

    def text(col_name: str) -> list[str]:
        col = _column(table, col_name)
        return [""] * n_items if col is None else col.fillna("").astype(str).tolist()

    titles = text(cfg.title_column)
    abstracts = text(cfg.abstract_column) if cfg.abstract_tokens else [""] * n_items
    pieces = {}
    for name, texts, width in (("title", titles, cfg.title_tokens), ("abstract", abstracts, cfg.abstract_tokens)):
        ids = tok(texts, add_special_tokens=False, truncation=True, max_length=max(width, 1))["input_ids"] if width else []
        pieces[name] = (ids, width)
    # Pieces of real items first, so a real item's row is the same with or without synthetic items.
    used = sorted({t for ids, _ in pieces.values() for row in ids[:split.n_items] for t in row})
    used += sorted({t for ids, _ in pieces.values() for row in ids[split.n_items:] for t in row} - set(used))
    remap = {t: i + 1 for i, t in enumerate(used)}
    n_words = len(used)
    blocks, segments, col = [], {}, 0
    for name, (ids, width) in pieces.items():
        block = np.zeros((n_rows, width), dtype=np.int64)
        for row, seq in enumerate(ids, start=1):
            block[row, :len(seq)] = [remap[t] for t in seq[:width]]
        blocks.append(block)
        segments[name] = slice(col, col + width)
        col += width
    counts = {}
    offset = n_words
    for name, columns, width in (("category", cfg.category_columns, cfg.categories),
                                 ("subcategory", cfg.subcategory_columns, cfg.subcategories)):
        series = _column(table, columns)
        cells = [[]] + ([_values(c) for c in series] if series is not None and width else [[]] * n_items)
        block, counts[name] = _special(cells, width, offset)
        offset += counts[name]
        blocks.append(block)
        segments[name] = slice(col, col + width)
        col += width
    vector = None
    if cfg.vector_column:
        if cfg.vector_column not in table.columns:
            raise GenrecsysError(f"{split.dataset.name}: item table has no vector column {cfg.vector_column!r}")
        vector = _vectors(table[cfg.vector_column], split.dataset.name, cfg.vector_column)
    texts = [""] + [t if not cfg.abstract_tokens or not a else f"{t}. {a}" for t, a in zip(titles, abstracts)]
    out = ItemInputs(np.concatenate(blocks, axis=1), segments, offset + 1, n_words, counts["category"],
                     counts["subcategory"], texts, vector)
    split.meta[key] = out
    return out


def _with_synthetic_rows(table: pd.DataFrame, split, cfg: ItemTextConfig) -> pd.DataFrame:
    """The real item table (one row per real item, in index order) followed by the
    dataset's synthetic items, their text in the columns the real items use (so a
    synthetic item's category is the same special token as a real item's)."""
    from genrecsys.data.augmented import synthetic_items

    syn = synthetic_items(split)
    if len(syn) == 0:
        return table
    category = next((c for c in cfg.category_columns if c in table.columns), cfg.category_columns[0])
    extra = pd.DataFrame({cfg.title_column: syn["title"].fillna("").astype(str).to_numpy(),
                          cfg.abstract_column: syn["abstract"].fillna("").astype(str).to_numpy(),
                          category: syn["category"].fillna("").astype(str).to_numpy()},
                         index=pd.Index(syn["item"].astype(str), name=table.index.name))
    return pd.concat([table, extra])


def _vectors(series: pd.Series, name: str, column: str) -> np.ndarray:
    """Items without a vector get zeros; every present vector must have one length."""
    present = [np.asarray(v, dtype=np.float32) for v in series if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if not present:
        raise GenrecsysError(f"{name}: vector column {column!r} is empty")
    dim = len(present[0])
    out = np.zeros((len(series) + 1, dim), dtype=np.float32)
    for row, v in enumerate(series, start=1):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        arr = np.asarray(v, dtype=np.float32)
        if arr.shape != (dim,):
            raise GenrecsysError(f"{name}: vector column {column!r} mixes lengths {dim} and {arr.shape}")
        out[row] = arr
    return out
