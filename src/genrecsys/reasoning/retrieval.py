"""Nearest seed by cosine similarity (RELAND Eq. 3), exact or through FAISS.

:func:`nearest_seeds` is the one entry point. ``"exact"`` is the reference: chunked
matrix products on unit vectors with a stable top-k (ties go to the lower seed index).
``"faiss"`` is the project's vector-search engine: inner product on unit vectors in a flat
index for moderate pools, HNSW for large ones (approximate, no training pass). ``"auto"``
stays exact below ``HNSW_MIN_SEEDS`` seeds, where a brute-force product is as fast as any
index, and uses FAISS HNSW above it. A zero vector (a user the encoder never saw) has
similarity 0 with every seed and gets the first seed.

>>> import numpy as np
>>> seeds = np.array([[1.0, 0.0], [0.0, 1.0]])
>>> idx, sim = nearest_seeds(np.array([[0.9, 0.1], [0.0, 2.0]]), seeds)
>>> idx[:, 0].tolist(), [round(float(x), 3) for x in sim[:, 0]]
([0, 1], [0.994, 1.0])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from genrecsys.errors import GenrecsysError

if TYPE_CHECKING:
    import pandas as pd

    from genrecsys.reasoning.pool import ReasoningPool

METHODS = ("auto", "exact", "faiss")
HNSW_MIN_SEEDS = 50_000  # below this, brute force is as fast as an approximate index


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _check(queries: np.ndarray, seeds: np.ndarray, k: int) -> None:
    if seeds.ndim != 2 or len(seeds) == 0:
        raise GenrecsysError("the reasoning pool is empty: no seed vectors to retrieve from")
    if queries.ndim != 2:
        raise GenrecsysError(f"user vectors must be 2-d (n, d), got shape {queries.shape}")
    if queries.shape[1] != seeds.shape[1]:
        raise GenrecsysError(f"dimension mismatch: user vectors have d={queries.shape[1]}, the pool's seed vectors "
                             f"d={seeds.shape[1]} (build the pool and retrieve with the same behaviour encoder)")
    if not (np.isfinite(queries).all() and np.isfinite(seeds).all()):
        raise GenrecsysError("user or seed vectors hold NaN or inf values")
    if not 1 <= k <= len(seeds):
        raise GenrecsysError(f"k must be in 1..{len(seeds)} (the pool size), got {k}")


def exact_nearest(queries: np.ndarray, seeds: np.ndarray, k: int = 1,
                  chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k by cosine: (n, d), (S, d) -> indices (n, k) int64, similarities (n, k) float32."""
    q, s = unit_rows(queries), unit_rows(seeds)
    idx = np.empty((len(q), k), dtype=np.int64)
    sim = np.empty((len(q), k), dtype=np.float32)
    for start in range(0, len(q), chunk):
        scores = q[start:start + chunk] @ s.T  # (B, S)
        if k == 1:
            top = scores.argmax(1)[:, None]  # first maximum: ties go to the lower index
        else:
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (B, k), unordered
            # sort the k by (-score, index) so equal scores keep seed order
            vals = np.take_along_axis(scores, part, 1)
            order = np.lexsort((part, -vals), axis=1)
            top = np.take_along_axis(part, order, 1)
        idx[start:start + chunk] = top
        sim[start:start + chunk] = np.take_along_axis(scores, top, 1)
    return idx, sim


def faiss_nearest(queries: np.ndarray, seeds: np.ndarray, k: int = 1, index: str = "auto",
                  hnsw_m: int = 32, ef_search: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by cosine through FAISS: inner product on unit vectors.

    ``index``: "flat" (exact), "hnsw" (approximate graph index), or "auto" (hnsw from
    ``HNSW_MIN_SEEDS`` seeds up).
    """
    try:
        import faiss
    except ImportError:
        raise GenrecsysError("method='faiss' needs the faiss-cpu package (pip install faiss-cpu)") from None
    if index not in ("auto", "flat", "hnsw"):
        raise GenrecsysError(f"faiss index must be auto, flat or hnsw, got {index!r}")
    q, s = np.ascontiguousarray(unit_rows(queries)), np.ascontiguousarray(unit_rows(seeds))
    d = s.shape[1]
    if index == "hnsw" or (index == "auto" and len(s) >= HNSW_MIN_SEEDS):
        ix = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efSearch = max(ef_search, k)
    else:
        ix = faiss.IndexFlatIP(d)
    ix.add(s)
    sim, idx = ix.search(q, k)  # (n, k) each
    return idx.astype(np.int64), sim.astype(np.float32)


def nearest_seeds(queries: np.ndarray, seeds: np.ndarray, k: int = 1, method: str = "auto",
                  chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar seeds of every query, best first.

    ``queries`` (n, d) and ``seeds`` (S, d); returns seed positions (n, k) int64 and
    cosine similarities (n, k) float32.
    """
    if method not in METHODS:
        raise GenrecsysError(f"retrieval method must be one of {', '.join(METHODS)}, got {method!r}")
    q, s = np.asarray(queries), np.asarray(seeds)
    _check(q, s, k)
    if method == "exact" or (method == "auto" and len(s) < HNSW_MIN_SEEDS):
        return exact_nearest(q, s, k, chunk)
    return faiss_nearest(q, s, k)


def recall_at_1(approx: np.ndarray, exact: np.ndarray, exact_sim: np.ndarray | None = None,
                approx_sim: np.ndarray | None = None, tol: float = 1e-6) -> float:
    """Share of queries whose approximate top-1 is the exact top-1 (or, given similarities,
    ties it within ``tol``, since equally similar seeds are equally right)."""
    hit = approx[:, 0] == exact[:, 0]
    if exact_sim is not None and approx_sim is not None:
        hit |= np.abs(approx_sim[:, 0] - exact_sim[:, 0]) <= tol
    return float(hit.mean())


@dataclass(frozen=True)
class Assignment:
    """Each user's retrieved rationale: the nearest seed's (best first when k > 1)."""

    users: np.ndarray  # (n,) int64 user indices
    pool_rows: np.ndarray  # (n, k) int64 rows of the pool
    seed_users: np.ndarray  # (n, k) int64 user indices of those seeds
    similarity: np.ndarray  # (n, k) float32 cosine similarity
    rationale: list[str]  # (n,) the top seed's rationale text

    def frame(self) -> pd.DataFrame:
        """One row per user: user, seed_user, similarity, rationale (the top seed)."""
        import pandas as pd

        return pd.DataFrame({"user": self.users, "seed_user": self.seed_users[:, 0],
                             "similarity": self.similarity[:, 0], "rationale": self.rationale})


def assign_rationales(pool: ReasoningPool, user_matrix: np.ndarray, users: np.ndarray | None = None, *,
                      k: int = 1, method: str = "auto", field: str = "step2") -> Assignment:
    """RELAND Eq. 3: every user gets the rationale of the most cosine-similar seed.

    ``user_matrix`` is M, (n_users + 1, d) with user u at row u + 1; it may cover users
    the pool never saw (they are retrieved like any other). ``users`` defaults to all
    rows of M but the padding. A seed retrieves itself (similarity 1). ``field`` picks the
    text: "step2" (recommendations, what the paper encodes), "step1" or "text".
    """
    if len(pool) == 0:
        raise GenrecsysError("the reasoning pool is empty: build it with at least one seed user")
    texts = pool.texts(field)
    m = np.asarray(user_matrix, dtype=np.float32)
    if m.ndim != 2 or len(m) < 2:
        raise GenrecsysError(f"user matrix must be (n_users + 1, d) with row 0 = padding, got shape {m.shape}")
    n_users = len(m) - 1
    u = np.arange(n_users, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64).ravel()
    bad = u[(u < 0) | (u >= n_users)]
    if len(bad):
        raise GenrecsysError(f"user index {int(bad[0])} is out of range for the user matrix "
                             f"(users 0..{n_users - 1}, rows 1..{n_users})")
    rows, sim = nearest_seeds(m[u + 1], pool.vectors, k=k, method=method)
    seeds = pool.users[rows]
    return Assignment(u, rows, seeds, sim, [texts[r] for r in rows[:, 0]])
