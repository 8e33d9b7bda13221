"""Residual quantizers: item vectors -> short discrete codes, coarse to fine (semantic IDs).

Every quantizer writes ``levels`` codes per item, each in ``0..codebook_size-1``; level l
quantises what levels 0..l-1 left over (the residual), so a code prefix names a region of
the vector space and items that share a prefix are alike:

- ``"rkmeans"``, residual k-means: FAISS k-means on the residuals, level by level (the
  reconstruction of an item is the sum of its chosen centroids). ``balanced=True`` caps
  every centroid at ceil(N / K) items, so no code is a catch-all;
- ``"rqvae"``, TIGER's RQ-VAE (`train_rqvae`, at the end of this module; torch is
  imported only there): the same residual quantisation, on the latent of an MLP
  autoencoder trained with it.

`quantize` runs one of them, then `dedup` appends a last level that numbers items sharing
a code 0, 1, 2, ... (by item index), so every item's code is unique, and `code_stats`
measures what the quantizer did (collisions, codebook usage, perplexity, reconstruction).

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
>>> codes, stats = quantize(x, QuantizeConfig(levels=2, codebook_size=8))
>>> codes.shape, len({tuple(c) for c in codes}), stats["sizes"][:2]
((200, 3), 200, [8, 8])
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from genrecsys.errors import GenrecsysError

if TYPE_CHECKING:
    import torch

QUANTIZERS = ("rkmeans", "rqvae")

# FAISS warns below 39 training points per centroid: fewer leave centroids poorly placed.
MIN_POINTS_PER_CENTROID = 39
TIGER_CODEBOOK_SIZE = 256


def auto_codebook_size(n_items: int) -> int:
    """Codes per level when the config leaves it to the catalog: TIGER's 256 where the catalog
    fills it (>= 256 * 39 ~ 10k items, as TIGER's 12k-item Amazon sets do), else the largest
    power of two that still gives the first level 39 items per code (ML-100K's 1,682 items: 32),
    at least 2.

    >>> auto_codebook_size(12_101), auto_codebook_size(1_682), auto_codebook_size(20)
    (256, 32, 2)
    """
    k = TIGER_CODEBOOK_SIZE
    while k > 2 and n_items < k * MIN_POINTS_PER_CENTROID:
        k //= 2
    return k


@dataclass(frozen=True)
class QuantizeConfig:
    """How item vectors become codes. RQ-VAE fields follow TIGER (§3.1, App.): MLP encoder to a
    32-d latent, beta = 0.25, k-means initialised codebooks; smaller hidden layers and
    full-batch Adam because a catalog of a few thousand items trains in seconds that way."""

    quantizer: str = "rkmeans"  # rkmeans | rqvae
    levels: int = 3  # semantic levels, before the dedup level
    codebook_size: int | None = None  # codes per level; None = auto_codebook_size(n_items)
    balanced: bool = False  # rkmeans: at most ceil(N / K) items per centroid
    seed: int = 0
    kmeans_iters: int = 20
    hidden: tuple[int, ...] = (256, 128)  # RQ-VAE encoder layers (decoder: reversed)
    latent_dim: int = 32
    epochs: int = 300  # full-batch RQ-VAE epochs
    lr: float = 3e-3  # few full-batch steps: a little above Adam's usual 1e-3 (lower error on ML-100K text)
    beta: float = 0.25  # commitment weight

    def __post_init__(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise GenrecsysError(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {self.quantizer!r}")
        if self.levels < 1:
            raise GenrecsysError(f"levels must be >= 1, got {self.levels}")
        if self.codebook_size is not None and self.codebook_size < 2:
            raise GenrecsysError(f"codebook_size must be >= 2 (or None = auto), got {self.codebook_size}")
        if self.balanced and self.quantizer != "rkmeans":
            raise GenrecsysError("balanced applies to the rkmeans quantizer only")
        if self.kmeans_iters < 1 or self.epochs < 1:
            raise GenrecsysError("kmeans_iters and epochs must be >= 1")
        if self.latent_dim < 1 or any(h < 1 for h in self.hidden):
            raise GenrecsysError(f"latent_dim and hidden sizes must be >= 1, got {self.latent_dim}, {self.hidden}")
        if self.lr <= 0 or self.beta < 0:
            raise GenrecsysError(f"need lr > 0 and beta >= 0, got lr={self.lr}, beta={self.beta}")


@dataclass
class Quantized:
    """What a quantizer returns before dedup."""

    codes: np.ndarray  # (N, L) int64 in 0..K-1
    reconstruction: np.ndarray  # (N, D) the item vectors as the codes rebuild them
    error_by_level: list[float]  # mean squared reconstruction error after levels 0..l
    extra: dict[str, Any] = field(default_factory=dict)  # quantizer-specific diagnostics (JSON-able)
    centroids: list[np.ndarray] = field(default_factory=list)  # residual k-means: (K_l, D) per level


def quantize(vectors: np.ndarray, config: QuantizeConfig | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(N, D) item vectors -> ((N, levels + 1) int64 unique codes, diagnostics).

    The same vectors and config give the same codes (seeded, single-threaded).
    ``stats["sizes"]`` is the codebook size per level, the last being the dedup level's.
    """
    c = config or QuantizeConfig()
    x = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, D)
    if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
        raise GenrecsysError(f"quantize: expected a non-empty (items, dim) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise GenrecsysError("quantize: item vectors hold NaN or inf")
    k = c.codebook_size or auto_codebook_size(len(x))
    t0 = time.perf_counter()
    if c.quantizer == "rqvae":
        q = train_rqvae(x, c, k)
    else:
        q = residual_kmeans(x, c.levels, k, balanced=c.balanced, seed=c.seed, iters=c.kmeans_iters)
    codes, dedup_size = dedup(q.codes)  # (N, L + 1)
    stats = {"quantizer": c.quantizer, "levels": c.levels, "codebook_size": k, "balanced": c.balanced,
             **code_stats(q.codes, k), "dedup_size": dedup_size, "sizes": [k] * c.levels + [dedup_size],
             "reconstruction_error": squared_error(x, q.reconstruction),
             "reconstruction_error_by_level": q.error_by_level,
             "vector_variance": squared_error(x, x.mean(0, keepdims=True)),
             "n_items": len(x), "dim": x.shape[1], **q.extra, "seconds": time.perf_counter() - t0}
    return codes, stats


# ----------------------------------------------------------------------------- residual k-means
def residual_kmeans(x: np.ndarray, levels: int, k: int, *, balanced: bool = False, seed: int = 0,
                    iters: int = 20) -> Quantized:
    """Level l: k-means (K = k) on what levels < l left; each item takes its nearest centroid
    (or, balanced, a centroid with room) and passes on its residual.

    ``centroids`` holds each level's (K_l, D) centroids (K_l = min(k, N)); the RQ-VAE starts
    its codebooks from them.
    """
    residual = np.array(x, dtype=np.float32)  # (N, D)
    codes = np.zeros((len(x), levels), dtype=np.int64)
    centroids, errors = [], []
    for level in range(levels):
        c = kmeans(residual, k, seed=seed + level, iters=iters)  # (K_l, D)
        if balanced:
            codes[:, level] = balanced_assign(residual, c)
            c = recenter(residual, codes[:, level], c)
        else:
            codes[:, level] = nearest(residual, c)
        residual -= c[codes[:, level]]
        centroids.append(c)
        errors.append(float((residual.astype(np.float64) ** 2).sum(1).mean()))
    return Quantized(codes, x - residual, errors, centroids=centroids)


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iters: int = 20) -> np.ndarray:
    """(N, D) points -> (min(k, N), D) FAISS k-means centroids, deterministic for a seed."""
    import faiss

    k = min(k, len(x))  # FAISS needs at least as many points as centroids
    # one thread: the same seed gives the same centroids
    with thread_count(faiss.omp_get_max_threads, faiss.omp_set_num_threads, 1):
        km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=1 << 30)  # no warning, no subsampling
        km.train(np.ascontiguousarray(x, dtype=np.float32))
    return np.array(km.centroids, dtype=np.float32)


def squared_distances(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(N, D), (K, D) -> (N, K) squared Euclidean distances."""
    x64, c64 = x.astype(np.float64), c.astype(np.float64)  # float64: ties break the same way everywhere
    return np.maximum((x64 ** 2).sum(1)[:, None] - 2 * x64 @ c64.T + (c64 ** 2).sum(1)[None], 0.0)


def nearest(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(N, D), (K, D) -> (N,) index of each point's nearest centroid (lowest index on ties)."""
    return squared_distances(x, c).argmin(1)


def balanced_assign(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(N,) centroid per point with at most ceil(N / K) points per centroid.

    Greedy: every (point, centroid) pair from the closest up; a pair is taken when the point
    is still free and the centroid has room. Simple and deterministic, not optimal: the
    points left for last go to their nearest centroid that still has room.
    """
    d2 = squared_distances(x, c)  # (N, K)
    capacity = -(-len(x) // len(c))
    order = np.argsort(d2, axis=None, kind="stable")  # all pairs, nearest first
    points, cents = np.unravel_index(order, d2.shape)
    out, load, left = [-1] * len(x), [0] * len(c), len(x)
    for p, j in zip(points.tolist(), cents.tolist()):
        if out[p] < 0 and load[j] < capacity:
            out[p] = j
            load[j] += 1
            left -= 1
            if not left:
                break
    return np.asarray(out, dtype=np.int64)


def recenter(x: np.ndarray, assign: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Each centroid moved to the mean of the points assigned to it (unused ones stay): after a
    balanced assignment the k-means centroid is no longer its members' mean."""
    out = c.copy()
    counts = np.bincount(assign, minlength=len(c))
    sums = np.zeros_like(c, dtype=np.float64)
    np.add.at(sums, assign, x)
    used = counts > 0
    out[used] = (sums[used] / counts[used, None]).astype(np.float32)
    return out


# ----------------------------------------------------------------------------- dedup + diagnostics
def dedup(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """(N, L) codes -> ((N, L + 1) unique codes, dedup level size).

    Items sharing all L codes get 0, 1, 2, ... in the new last column, in item order; the
    level's size is the largest such group (1 when there are no collisions).

    >>> c, size = dedup(np.array([[1, 2], [0, 0], [1, 2], [1, 2]]))
    >>> c[:, -1].tolist(), size
    ([0, 0, 1, 2], 3)
    """
    codes = np.asarray(codes, dtype=np.int64)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")  # grouped by code, by item index inside a group
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # each group's first slot in `order`
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - starts[inverse[order]]
    return np.column_stack([codes, rank]), max(int(counts.max(initial=0)), 1)


def code_stats(codes: np.ndarray, k: int) -> dict[str, Any]:
    """Diagnostics of (N, L) codes before dedup, each level having ``k`` codes.

    collision_rate: fraction of items whose full code another item shares; largest_bucket:
    most items on one code; usage[l]: fraction of level l's codes used; perplexity[l]: exp of
    the entropy of level l's code frequencies (k when all codes are used equally, 1 when one
    code takes every item).
    """
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    usage, perplexity = [], []
    for level in range(codes.shape[1]):
        freq = np.bincount(codes[:, level], minlength=k)
        p = freq[freq > 0] / len(codes)
        usage.append(float((freq > 0).sum() / k))
        perplexity.append(float(math.exp(-(p * np.log(p)).sum())))
    return {"collision_rate": float((counts[inverse.reshape(-1)] > 1).mean()), "largest_bucket": int(counts.max()),
            "usage": usage, "perplexity": perplexity}


def squared_error(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over rows of the squared Euclidean distance between x and y (broadcast)."""
    return float(((x.astype(np.float64) - y) ** 2).sum(1).mean())


@contextmanager
def thread_count(get, set_, n: int) -> Iterator[None]:
    """A process-wide thread count (``get()`` / ``set_(n)``) set to ``n`` for the block, then
    restored: FAISS's OpenMP count for k-means, torch's intra-op count for the RQ-VAE."""
    before = get()
    set_(n)
    try:
        yield
    finally:
        set_(before)


# ----------------------------------------------------------------------------- RQ-VAE
# TIGER's RQ-VAE (Rajput et al. 2023, §3.1): semantic IDs from a residual-quantised autoencoder.
#
#     z = E(x)                                       MLP encoder, (N, D) -> (N, d_z)
#     r_0 = z,  c_l = argmin_k ||r_l - e^l_k||,  r_l+1 = r_l - e^l_c_l      one codebook per level
#     x_hat = Dec(z + sg[z_q - z]),  z_q = sum_l e^l_c_l                    straight-through estimator
#     loss = ||x - x_hat||^2 + sum_l ||sg[r_l] - e^l_c_l||^2 + beta ||r_l - sg[e^l_c_l]||^2
#
# The codebook term pulls each chosen code towards its residual; the commitment term (beta
# 0.25) keeps the encoder close to its codes. Codebooks start as residual k-means of the
# untrained encoder's latents (TIGER: k-means on the first batch, against codebook collapse;
# here the batch is the whole catalog), and a code that no item chose in an epoch is moved
# to a random residual of its level (dead-code reset), so codebooks stay in use.
#
# Full-batch Adam for a fixed number of epochs on one thread with a forked, seeded RNG: the
# same vectors and config give the same codes, and the caller's RNG state is untouched.


def train_rqvae(x: np.ndarray, config: QuantizeConfig, k: int) -> Quantized:
    """(N, D) item vectors -> codes (N, levels), the decoder's reconstruction, diagnostics.

    The vectors are centred and scaled to unit per-dimension variance for training (so one
    learning rate serves unit-norm text vectors and raw CF embeddings alike); the
    reconstruction is returned in the input's units.
    """
    import torch
    import torch.nn.functional as F

    c = config
    mean = x.mean(0, keepdims=True)  # (1, D)
    scale = float(np.sqrt(((x - mean) ** 2).mean())) or 1.0
    with thread_count(torch.get_num_threads, torch.set_num_threads, 1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        gen = torch.Generator().manual_seed(c.seed)  # dead-code resets
        data = torch.as_tensor((x - mean) / scale, dtype=torch.float32)  # (N, D)
        enc = mlp([x.shape[1], *c.hidden, c.latent_dim])
        dec = mlp([c.latent_dim, *reversed(c.hidden), x.shape[1]])
        with torch.no_grad():
            z0 = enc(data).numpy()  # (N, d_z)
        init = residual_kmeans(z0, c.levels, k, seed=c.seed, iters=c.kmeans_iters).centroids
        codebooks = [torch.nn.Parameter(torch.as_tensor(cent)) for cent in init]  # (K_l, d_z) each
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), *codebooks], lr=c.lr)
        resets = 0
        for _ in range(c.epochs):
            z = enc(data)  # (N, d_z)
            residuals, chosen, codes = residual_quantize(z, codebooks)
            z_q = torch.stack(chosen).sum(0)  # (N, d_z)
            x_hat = dec(z + (z_q - z).detach())  # straight-through: the decoder's gradient reaches the encoder
            recon = F.mse_loss(x_hat, data)
            quant = sum(F.mse_loss(e, r.detach()) + c.beta * F.mse_loss(r, e.detach())  # codebook + commitment
                        for r, e in zip(residuals, chosen))
            opt.zero_grad()
            (recon + quant).backward()
            opt.step()
            resets += reset_dead_codes(codebooks, codes, residuals, opt, gen)
        with torch.no_grad():
            z = enc(data)
            _, chosen, codes = residual_quantize(z, codebooks)
            partial = torch.cumsum(torch.stack(chosen), 0)  # (L, N, d_z): z_q after levels 0..l
            rebuilt = [dec(p).numpy() * scale + mean for p in partial]  # (N, D) each
    extra = {"epochs": c.epochs, "dead_code_resets": resets, "final_recon_loss": recon.item(),
             "final_quant_loss": quant.item()}
    return Quantized(codes.numpy().astype(np.int64), rebuilt[-1], [squared_error(x, r) for r in rebuilt], extra)


def residual_quantize(z: "torch.Tensor", codebooks: list) -> tuple[list, list, "torch.Tensor"]:
    """(N, d_z) latents -> (residual r_l per level, chosen code vector e_l per level, (N, L) codes).

    ``r_l`` carries the encoder's gradient, ``e_l`` its codebook's; r_l+1 = r_l - sg[e_l], so
    each level's codebook learns only from its own term.
    """
    import torch

    r, residuals, chosen, codes = z, [], [], []
    for cb in codebooks:  # (K, d_z)
        with torch.no_grad():
            d2 = (r * r).sum(1, keepdim=True) - 2 * r @ cb.T + (cb * cb).sum(1)  # (N, K)
            idx = d2.argmin(1)  # (N,)
        e = cb[idx]  # (N, d_z)
        residuals.append(r)
        chosen.append(e)
        codes.append(idx)
        r = r - e.detach()
    return residuals, chosen, torch.stack(codes, 1)


def reset_dead_codes(codebooks: list, codes: "torch.Tensor", residuals: list, opt, gen) -> int:
    """Move every code no item chose to a random residual of its level (and clear its Adam
    moments, which would otherwise carry it back); returns how many were moved."""
    import torch

    moved = 0
    with torch.no_grad():
        for level, cb in enumerate(codebooks):
            dead = torch.bincount(codes[:, level], minlength=len(cb)) == 0  # (K,)
            n = int(dead.sum())
            if not n:
                continue
            r = residuals[level].detach()  # (N, d_z)
            cb[dead] = r[torch.randint(len(r), (n,), generator=gen)]
            for moment in opt.state.get(cb, {}).values():
                if moment.shape == cb.shape:
                    moment[dead] = 0
            moved += n
    return moved


def mlp(dims: list[int]):
    """Linear layers of the given sizes with ReLU between them (none after the last)."""
    from torch import nn

    layers: list = []
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(dims) - 2 else [])
    return nn.Sequential(*layers)
