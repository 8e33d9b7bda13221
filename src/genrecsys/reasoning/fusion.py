"""RELAND's fusion layer (§3.2.2, Eq. 4-5) and the "+f_item" item-feature extension.

Text side inputs are plain matrices of frozen text vectors, computed once offline:

- ``user_text`` (U+1, d_text): the encoded Step-2 rationale of split user u is row
  u + 1; row 0 is padding (the layout of the behaviour matrix M in
  `genrecsys.reasoning.encoder`, so retrieval output lines up row for row);
- ``item_text`` (I+1, d_text): row i is the encoded text (title + genres) of item i;
  row 0 is the padding item.

Padding rows are never read for a real user or item; zeros by convention.

`UserFusion` has two forms. ``attention`` is Eq. 5, with a learnable vector W in R^d
shared by both inputs:

    z_u = Linear(text_u)
    [a1, a2] = softmax([e_u . W, z_u . W])
    e'_u = a1 e_u + a2 z_u

It replaces half of e_u by text from the first step (a1 = a2 = 1/2 at initialisation),
so a weak rationale can pull a backbone below its ID-only self. ``gated`` is a residual
whose gate starts at zero, so the model begins exactly as ID-only and learns how much
text to take:

    e'_u = e_u + tanh(a) z_u             # one learned scalar a, 0 at the start

and the item side likewise, e'_i = e_i + tanh(b) Linear(text_i). One scalar per side, not
a gate computed from the inputs: under Adam every weight moves ~lr per step, so a gate fed
by 2d zero-initialised weights saturates within an epoch, while a scalar opens no faster
than lr per step and only as far as the loss keeps asking.

`ItemFeatures` is the "+f_item" extension of Table 2: the item ID embedding is
concatenated with the projected item text and mapped back to d, so every place a model
uses item embeddings (sequence input and output layer alike) sees the same table.

A model opts in through two optional config fields, ``user_text`` and ``item_text``
(paths to ``.npy`` files); `UserFusion.maybe` / `ItemFeatures.maybe` return None when a
field is None, so the plain ID model keeps exactly its parameters and arithmetic.
End to end, from the per-user Step-2 texts that retrieval assigns (all users, in order):

    np.save("user_text.npy", user_text_matrix(assignment.rationale))   # (U+1, 384), MiniLM
    np.save("item_text.npy", item_text_matrix(split))                  # (I+1, 384)
    genrecsys train --model sasrec --param user_text=user_text.npy --param item_text=item_text.npy

>>> import numpy as np, torch
>>> fusion = UserFusion(np.eye(4, dtype=np.float32), d=8)  # 3 users + the padding row
>>> fusion(torch.zeros(3, 8), torch.arange(3)).shape
torch.Size([3, 8])
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from genrecsys.errors import GenrecsysError
from genrecsys.files import building_file


def load_text_matrix(source: str | Path | np.ndarray, n_rows: int, name: str, layout: str = "") -> np.ndarray:
    """A (n_rows, d_text) float32 matrix from a ``.npy`` path or an array, validated.

    Wrong ndim, row count, a non-numeric dtype, NaN or inf are `GenrecsysError`s that
    name `name` (e.g. "user_text") and what was expected; `layout` (e.g. "row 0 is
    padding") is added to a row-count error.
    """
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise GenrecsysError(f"{name}: file not found: {path}")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise GenrecsysError(f"{name}: cannot read {path} as a .npy matrix ({exc})") from None
        where = f"{name} ({path})"
    else:
        arr = np.asarray(source)
        where = name
    if arr.ndim != 2:
        raise GenrecsysError(f"{where}: expected a 2-d matrix (rows, d_text), got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        hint = f"; {layout}" if layout else ""
        raise GenrecsysError(f"{where}: expected {n_rows} rows, got {arr.shape[0]} (shape {arr.shape}){hint}")
    if arr.shape[1] < 1:
        raise GenrecsysError(f"{where}: text vectors have dimension 0")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise GenrecsysError(f"{where}: expected numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        raise GenrecsysError(f"{where}: {len(rows)} row(s) hold NaN or inf, first row {rows[0]}")
    return arr


def encode_texts(texts: Sequence[str], model_dir: str | Path | None = None, batch_size: int = 64,
                 cache_dir: str | Path | None = None, *, executor: str = "local", ray_workers: int = 2,
                 ray_address: str | None = None) -> np.ndarray:
    """(N,) texts -> (N, H) float32 sentence embeddings, in input order.

    `model_dir` is a sentence-transformers directory; None is the embedded
    all-MiniLM-L6-v2 (H = 384), found offline. Embeddings are cached as
    ``<cache_dir>/text_vectors/<hash>.npy`` keyed by the model files and the texts, so
    re-running an experiment never re-encodes (`cache_dir` None: the default cache).
    ``executor="ray"`` encodes on ``ray_workers`` Ray actors
    (:func:`genrecsys.llm.distributed.embed_on_ray`; same vectors to float tolerance, so
    both executors share one cache entry).
    """
    from genrecsys.data.movielens import default_cache_dir

    if executor not in ("local", "ray"):
        raise GenrecsysError(f"executor must be local or ray, got {executor!r}")

    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if model_dir is None:
        from genrecsys.assets import embedded_text_encoder

        model_dir = embedded_text_encoder(cache_root)
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise GenrecsysError(f"text encoder directory not found: {model_dir}")
    texts = [str(t) for t in texts]
    cache = cache_root / "text_vectors" / f"{_texts_key(texts, model_dir)}.npy"
    if cache.is_file():
        return np.load(cache)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    if executor == "ray":
        from genrecsys.llm.distributed import embed_on_ray

        vectors = embed_on_ray(texts, model_dir, num_workers=ray_workers, encode_batch_size=batch_size,
                               address=ray_address)  # (N, H)
    else:
        vectors = _encode_local(texts, model_dir, batch_size)  # (N, H)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    with building_file(cache) as tmp:  # a killed run never leaves a truncated entry; concurrent runs don't share one
        np.save(tmp, vectors)
    return vectors


def load_text_encoder(model_dir: str | Path | None = None, cache_dir: str | Path | None = None):
    """The sentence-transformers model in ``model_dir`` (None: the embedded MiniLM), on the
    CPU, for callers that encode texts one at a time (the chat's queries), uncached."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    if model_dir is None:
        from genrecsys.assets import embedded_text_encoder
        from genrecsys.data.movielens import default_cache_dir

        model_dir = embedded_text_encoder(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in our logs
    try:
        return SentenceTransformer(str(model_dir), device="cpu")
    finally:
        if bar:
            hf_logging.enable_progress_bar()


def _encode_local(texts: list[str], model_dir: Path, batch_size: int) -> np.ndarray:
    model = load_text_encoder(model_dir)
    return model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)  # (N, H)


def _texts_key(texts: list[str], model_dir: Path) -> str:
    h = hashlib.sha256()
    # The model's identity: its config and weight files' names and sizes (hashing the
    # weights themselves would cost more than a small encoding run).
    for f in sorted(model_dir.rglob("*")):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".txt"}:
            h.update(f"{f.relative_to(model_dir)}:{f.stat().st_size}".encode())
            if f.suffix == ".json":
                h.update(f.read_bytes())
    h.update(json.dumps(texts).encode())
    return h.hexdigest()[:32]


def item_texts(split) -> list[str]:
    """Text of every item row of `split` (I+1 strings, row 0 = ""): its title, then its
    genres/category as "Genres: a, b" (ML's ``Action|Comedy`` cells are split on '|')."""
    table = split.dataset.items.drop_duplicates("item").set_index("item").reindex(split.item_ids[1:])
    titles = table["title"].fillna("").astype(str).tolist() if "title" in table else [""] * split.n_items
    column = next((c for c in ("genres", "category") if c in table), None)
    genres = table[column].fillna("").astype(str).tolist() if column else [""] * split.n_items
    out = [""]
    for title, genre in zip(titles, genres):
        parts = [g.strip() for g in genre.split("|") if g.strip()]
        out.append(f"{title}. Genres: {', '.join(parts)}" if parts else title)
    return out


def user_text_matrix(texts: Sequence[str], model_dir: str | Path | None = None, batch_size: int = 64,
                     cache_dir: str | Path | None = None) -> np.ndarray:
    """Per-user rationale texts (position u = split user u) -> ``user_text`` (U+1, H)
    with a zero padding row 0. Users who share a rationale (retrieval gives one seed's
    text to many) are encoded once.

    >>> # np.save("user_text.npy", user_text_matrix(assignment.rationale))   # then --param user_text=...
    """
    unique = list(dict.fromkeys(str(t) for t in texts))
    row_of = {t: i for i, t in enumerate(unique)}
    vectors = encode_texts(unique, model_dir, batch_size, cache_dir)  # (N_unique, H)
    out = np.zeros((len(texts) + 1, vectors.shape[1] if len(unique) else 0), dtype=np.float32)
    if len(texts):
        out[1:] = vectors[[row_of[str(t)] for t in texts]]
    return out


def item_text_matrix(split, model_dir: str | Path | None = None, batch_size: int = 64,
                     cache_dir: str | Path | None = None) -> np.ndarray:
    """``item_text`` (I+1, H) for `split`: each item's `item_texts` encoded, row 0 zeros."""
    vectors = encode_texts(item_texts(split)[1:], model_dir, batch_size, cache_dir)  # (I, H)
    return np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors])


FUSION_FORMS = ("attention", "gated")


class UserFusion(nn.Module):
    """A user's behaviour vector e_u fused with projected text z_u: Eq. 5's attention, or
    the zero-initialised gated residual (see the module doc).

    The text rows are a frozen, non-persistent buffer: they are an input named by the
    config (like a graph model's adjacency), so state dicts hold only learned weights.
    """

    def __init__(self, text: np.ndarray, d: int, form: str = "attention") -> None:
        super().__init__()
        if form not in FUSION_FORMS:
            raise GenrecsysError(f"user fusion form must be one of {', '.join(FUSION_FORMS)}, got {form!r}")
        self.form = form
        self.register_buffer("text", torch.as_tensor(text, dtype=torch.float32), persistent=False)  # (U+1, d_text)
        self.proj = nn.Linear(self.text.shape[1], d)
        self.w = nn.Parameter(torch.empty(d))
        nn.init.normal_(self.w, std=0.02)  # near-uniform attention at the start
        if form == "gated":  # w is drawn in both forms, so the item-feature layer built next draws the same weights
            del self.w
            self.gate = nn.Parameter(torch.zeros(()))  # tanh(0) = 0: exactly the ID model at the start

    @classmethod
    def maybe(cls, source: str | Path | np.ndarray | None, n_users: int, d: int,
              form: str = "attention") -> UserFusion | None:
        """The fusion layer for a config's ``user_text`` field ((n_users + 1) rows), or None."""
        if source is None:
            return None
        layout = f"user_text has one row per user plus padding row 0 (user u is row u + 1), {n_users + 1} in all"
        return cls(load_text_matrix(source, n_users + 1, "user_text", layout), d, form)

    def attention(self, e: torch.Tensor, users: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., d) user vectors, (B,) user indices or None (= every user, e is (U, d))
        -> weights (..., 2) and the projected text z (..., d). Attention: softmax weights
        summing to 1; gated: (1, g), the text's gate g in (-1, 1)."""
        d = self.proj.out_features
        if e.shape[-1] != d:
            raise GenrecsysError(f"user fusion: user vectors have dimension {e.shape[-1]}, the layer was built for {d}")
        text = self.text[1:] if users is None else self.text[users + 1]  # (B, d_text); row 0 is padding
        if text.shape[0] != e.shape[0]:
            raise GenrecsysError(f"user fusion: {e.shape[0]} user vectors but {text.shape[0]} users")
        z = self.proj(text)  # (B, d)
        z = z.view(z.shape[0], *([1] * (e.dim() - 2)), d).expand_as(e)  # broadcast over sequence positions
        if self.form == "gated":
            g = torch.tanh(self.gate).expand(*e.shape[:-1], 1)  # (..., 1)
            return torch.cat([torch.ones_like(g), g], dim=-1), z
        logits = torch.stack([e @ self.w, z @ self.w], dim=-1)  # (..., 2)
        return torch.softmax(logits, dim=-1), z

    def forward(self, e: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d) or (B, L, d) user vectors of `users` (B,) -> fused vectors, same shape."""
        alpha, z = self.attention(e, users)
        return alpha[..., :1] * e + alpha[..., 1:] * z


class ItemFeatures(nn.Module):
    """"+f_item": e'_i = W [e_i ; Linear(text_i)] for the whole item table at once (form
    ``attention``, the paper's RELAND setting), or e'_i = e_i + tanh(b) Linear(text_i) with
    one scalar b = 0 at the start (form ``gated``)."""

    def __init__(self, text: np.ndarray, d: int, form: str = "attention") -> None:
        super().__init__()
        if form not in FUSION_FORMS:
            raise GenrecsysError(f"item feature form must be one of {', '.join(FUSION_FORMS)}, got {form!r}")
        self.register_buffer("text", torch.as_tensor(text, dtype=torch.float32), persistent=False)  # (I+1, d_text)
        self.d = d
        self.proj = nn.Linear(self.text.shape[1], d)
        self.gate = nn.Parameter(torch.zeros(())) if form == "gated" else None
        if self.gate is None:
            self.mix = nn.Linear(2 * d, d)
            # Start as the ID model (identity on the ID half, nothing from the text half) so
            # the text enters only as far as training finds it useful.
            with torch.no_grad():
                self.mix.weight.zero_()
                self.mix.weight[:, :d] = torch.eye(d)
                self.mix.bias.zero_()

    @classmethod
    def maybe(cls, source: str | Path | np.ndarray | None, n_item_rows: int, d: int,
              form: str = "attention") -> ItemFeatures | None:
        """The item-feature layer for a config's ``item_text`` field (n_item_rows = I+1), or None."""
        if source is None:
            return None
        return cls(load_text_matrix(source, n_item_rows, "item_text", "row i is item i, row 0 is padding"), d, form)

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        """(I+1, d) item ID embeddings -> (I+1, d) feature-enhanced item embeddings."""
        if table.shape != (self.text.shape[0], self.d):
            raise GenrecsysError(f"item features: expected an item table of shape "
                                 f"{(self.text.shape[0], self.d)}, got {tuple(table.shape)}")
        if self.gate is not None:
            return table + torch.tanh(self.gate) * self.proj(self.text)
        return self.mix(torch.cat([table, self.proj(self.text)], dim=-1))


def side_layers(config, n_users: int, n_item_rows: int, d_user: int,
                d_item: int | None = None) -> tuple[UserFusion | None, ItemFeatures | None]:
    """A backbone config's RELAND layers: user fusion (``user_text``) and item features
    (``item_text``), both in the form ``user_fusion`` names; None where the field is None.

    With the gated form both draw their initial weights from a forked RNG, so every other
    weight of the backbone is the one its ID-only run draws under the same seed; since both
    layers start as the identity, the +RELAND model then starts as exactly that ID-only
    model. (The attention form keeps the RNG order its earlier runs were trained with.)
    """
    gated = config.user_fusion == "gated"
    with torch.random.fork_rng(devices=[]) if gated else contextlib.nullcontext():
        return (UserFusion.maybe(config.user_text, n_users, d_user, config.user_fusion),
                ItemFeatures.maybe(config.item_text, n_item_rows, d_item or d_user, config.user_fusion))


def fuse_users(fusion: UserFusion | None, e: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
    """`fusion(e, users)`, or `e` unchanged for a plain ID model (fusion None)."""
    return e if fusion is None else fusion(e, users)


def item_table(features: ItemFeatures | None, weight: torch.Tensor) -> torch.Tensor:
    """The (I+1, d) item table a model scores with: `weight` itself, or with features."""
    return weight if features is None else features(weight)
