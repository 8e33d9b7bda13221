"""Seed-user sampling (RELAND §3.1.1): who gets an LLM rationale.

The adaptive strategy alternates two kinds of turns until the budget is spent:

- **representativeness-aware**: users are clustered with K-means on their behaviour
  vectors; a turn of ``step`` seeds gives cluster k a share N_k proportional to its size
  (largest remainders), taking the user nearest the centroid when N_k = 1 and N_k users
  uniformly at random otherwise;
- **importance-aware**: every remaining user is drawn independently, Bernoulli with a
  probability proportional to its history length |D_u| (Eq. 2).

The paper does not size a turn; we take ``step`` = the number of clusters, so with the
authors' settings (clusters = 5% of users, budget = 10%) one representative turn picks
about one user per cluster and one importance turn picks the rest. Eq. 2's literal
probability |D_u| / sum |D| draws about one user per pass; we scale it so one pass draws
about a turn's quota (capped at 1), repeat passes until the quota is met and drop a
random overshoot. Turns are always computed at full size and then cut, so a larger
budget extends a smaller one (same seed): a pool can grow without re-sampling.

Users with an empty history are never seeds (they have nothing to reason about); they
still get a rationale later, by retrieval. Uniform random sampling is the paper's
"w/o a.s." ablation.

>>> import numpy as np
>>> m = np.random.default_rng(0).normal(size=(101, 8)); m[0] = 0   # row 0: padding
>>> s = adaptive_seed_sample(m, np.full(100, 5), SamplingConfig(budget=0.1, n_clusters=5))
>>> len(s.users), sorted(set(s.strategy.tolist()))
(10, ['importance', 'representative'])
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genrecsys.errors import GenrecsysError


@dataclass(frozen=True)
class SamplingConfig:
    """How many seeds and how they are drawn. A float is a fraction of all users, an int a count."""

    budget: float | int = 0.1  # seed users; the authors sampled 10%
    n_clusters: float | int = 0.05  # K-means clusters; the authors used 5% of users
    step: int | None = None  # seeds per turn; None: the number of clusters
    normalize: bool = True  # cluster unit vectors, the geometry retrieval uses (cosine)
    kmeans_iters: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("budget", "n_clusters"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise GenrecsysError(f"sampling.{name} must be a fraction (float) or a count (int), got {v!r}")
            if isinstance(v, float) and not 0 < v <= 1:
                raise GenrecsysError(f"sampling.{name} as a fraction must be in (0, 1], got {v}")
            if isinstance(v, int) and v < 1:
                raise GenrecsysError(f"sampling.{name} as a count must be >= 1, got {v}")
        if self.step is not None and self.step < 1:
            raise GenrecsysError(f"sampling.step must be >= 1, got {self.step}")
        if self.kmeans_iters < 1:
            raise GenrecsysError("sampling.kmeans_iters must be >= 1")


@dataclass(frozen=True)
class SeedSample:
    """The chosen seeds, in draw order."""

    users: np.ndarray  # (S,) int64 user indices (split order, 0..U-1)
    strategy: np.ndarray  # (S,) str: "representative" | "importance" | "uniform"
    clusters: np.ndarray | None = None  # (U,) int64 cluster of every user, -1 when not clustered
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.users)


def resolve_count(value: float | int, n: int) -> int:
    """A fraction of ``n`` (rounded, at least 1) or a count.

    >>> resolve_count(0.1, 943), resolve_count(50, 943)
    (94, 50)
    """
    return max(1, int(round(value * n))) if isinstance(value, float) else int(value)


def kmeans(x: np.ndarray, k: int, *, iters: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's K-means with k-means++ initialisation: (n, d) -> centroids (k, d), labels (n,).

    Deterministic under ``seed``. An emptied cluster is moved to the point farthest from
    its centroid, so all k clusters stay in use while k <= n distinct points.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise GenrecsysError(f"kmeans: need 1 <= k <= n points, got k={k}, n={n}")
    rng = np.random.default_rng(seed)
    centers = np.empty((k, x.shape[1]))
    centers[0] = x[rng.integers(n)]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for j in range(1, k):
        total = d2.sum()
        pick = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centers[j] = x[pick]
        d2 = np.minimum(d2, ((x - centers[j]) ** 2).sum(1))
    labels = np.full(n, -1)
    for _ in range(iters):
        dist = _sq_distances(x, centers)  # (n, k)
        new = dist.argmin(1)
        counts = np.bincount(new, minlength=k)
        for j in np.flatnonzero(counts == 0):
            far = int(dist[np.arange(n), new].argmax())
            new[far] = j
            dist[far] = 0.0  # do not hand the same point to two empty clusters
        if np.array_equal(new, labels):
            break
        labels = new
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, x)
        centers = sums / np.bincount(labels, minlength=k)[:, None]
    return centers, labels


def _sq_distances(x: np.ndarray, centers: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """(n, d), (k, d) -> (n, k) squared Euclidean distances, in row chunks to bound memory."""
    out = np.empty((len(x), len(centers)))
    c2 = (centers ** 2).sum(1)
    for s in range(0, len(x), chunk):
        xs = x[s:s + chunk]
        out[s:s + chunk] = np.maximum((xs ** 2).sum(1)[:, None] - 2 * xs @ centers.T + c2, 0.0)
    return out


def _eligible(user_matrix: np.ndarray, history_lengths: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Users that may be seeds (non-empty history), with a note on any skipped."""
    lengths = np.asarray(history_lengths)
    if user_matrix.ndim != 2 or len(user_matrix) != len(lengths) + 1:
        raise GenrecsysError(f"user matrix must be (n_users + 1, d) with row 0 = padding; got shape "
                             f"{user_matrix.shape} for {len(lengths)} users")
    if not np.isfinite(user_matrix).all():
        raise GenrecsysError("user matrix holds NaN or inf values")
    users = np.flatnonzero(lengths > 0)
    notes = []
    if len(users) < len(lengths):
        notes.append(f"{len(lengths) - len(users)} user(s) with an empty history skipped (never seeds)")
    if len(users) == 0:
        raise GenrecsysError(f"no seed candidates: all {len(lengths)} users have an empty history")
    return users, notes


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x, dtype=np.float64), where=norms > 0)


def _apportion(quota: int, sizes: np.ndarray) -> np.ndarray:
    """Split ``quota`` over groups proportionally to ``sizes`` (largest remainders), never
    giving a group more than its size; ties go to the lower group index."""
    alloc = np.zeros(len(sizes), dtype=np.int64)
    left = min(quota, int(sizes.sum()))
    while left > 0:
        room = sizes - alloc
        share = left * room / room.sum()
        add = np.minimum(np.floor(share).astype(np.int64), room)
        rest = left - int(add.sum())
        if rest > 0:
            order = np.lexsort((np.arange(len(sizes)), -(share - np.floor(share))))
            order = order[(room - add)[order] > 0][:rest]
            add[order] += 1
        alloc += add
        left -= int(add.sum())
    return alloc


def _representative_turn(quota: int, vectors: np.ndarray, labels: np.ndarray, centers: np.ndarray,
                         free: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``quota`` users spread over clusters by size; nearest-to-centroid when a cluster gets one."""
    members = [np.flatnonzero(free & (labels == k)) for k in range(len(centers))]
    alloc = _apportion(quota, np.array([len(m) for m in members]))
    picks = []
    for k in np.flatnonzero(alloc):
        m = members[k]
        if alloc[k] == 1:
            picks.append(m[[((vectors[m] - centers[k]) ** 2).sum(1).argmin()]])
        else:
            picks.append(rng.choice(m, size=alloc[k], replace=False))
    out = np.concatenate(picks) if picks else np.empty(0, dtype=np.int64)
    return rng.permutation(out)  # a cut turn then keeps an unbiased subset, not the low clusters


def _importance_turn(quota: int, lengths: np.ndarray, free: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli passes with P(u) proportional to |D_u| until ``quota`` users are drawn."""
    cand = np.flatnonzero(free)
    quota = min(quota, len(cand))
    chosen: list[int] = []
    taken = np.zeros(len(cand), dtype=bool)
    while len(chosen) < quota:
        w = np.where(taken, 0.0, lengths[cand].astype(np.float64))
        p = np.minimum(1.0, (quota - len(chosen)) * w / w.sum())
        hit = np.flatnonzero(rng.random(len(cand)) < p)
        hit = rng.permutation(hit)[:quota - len(chosen)]  # overshoot of the last pass: a random subset stays
        taken[hit] = True
        chosen.extend(cand[hit].tolist())
    return np.asarray(chosen, dtype=np.int64)


def adaptive_seed_sample(user_matrix: np.ndarray, history_lengths: np.ndarray,
                         config: SamplingConfig = SamplingConfig()) -> SeedSample:
    """RELAND's adaptive sampling: representative and importance turns, alternating.

    ``user_matrix`` is (n_users + 1, d) with row 0 = padding (user u is row u + 1);
    ``history_lengths`` is (n_users,) |D_u|, e.g. ``split.train.lengths()``. A budget larger
    than the users with a history takes all of them (with a note).
    """
    m = np.asarray(user_matrix, dtype=np.float64)
    lengths = np.asarray(history_lengths, dtype=np.int64)
    users, notes = _eligible(m, lengths)
    n_users = len(lengths)
    budget = resolve_count(config.budget, n_users)
    if budget > len(users):
        notes.append(f"budget {budget} exceeds the {len(users)} users with a history; all of them are seeds")
        budget = len(users)
    k = min(resolve_count(config.n_clusters, n_users), len(users))
    vectors = m[users + 1]
    if config.normalize:
        vectors = _unit(vectors)
    centers, labels = kmeans(vectors, k, iters=config.kmeans_iters, seed=config.seed)
    step = config.step or k
    rng = np.random.default_rng(config.seed)
    free = np.ones(len(users), dtype=bool)
    picked: list[np.ndarray] = []
    kinds: list[str] = []
    turn = 0
    while sum(len(p) for p in picked) < budget and free.any():
        if turn % 2 == 0:
            got = _representative_turn(step, vectors, labels, centers, free, rng)
            kind = "representative"
        else:
            got = _importance_turn(step, lengths[users], free, rng)
            kind = "importance"
        free[got] = False
        picked.append(got)
        kinds.extend([kind] * len(got))
        turn += 1
    local = np.concatenate(picked)[:budget]
    clusters = np.full(n_users, -1, dtype=np.int64)
    clusters[users] = labels
    return SeedSample(users[local].astype(np.int64), np.asarray(kinds[:budget]), clusters, tuple(notes))


def uniform_seed_sample(history_lengths: np.ndarray, budget: float | int = 0.1, seed: int = 0,
                        user_matrix: np.ndarray | None = None) -> SeedSample:
    """Uniform random seeds among users with a history: the "w/o a.s." ablation.

    >>> uniform_seed_sample(np.array([3, 0, 2, 5]), budget=2, seed=1).users.tolist()
    [0, 2]
    """
    lengths = np.asarray(history_lengths, dtype=np.int64)
    m = np.zeros((len(lengths) + 1, 1)) if user_matrix is None else np.asarray(user_matrix)
    users, notes = _eligible(m, lengths)
    n = resolve_count(budget, len(lengths))
    if n > len(users):
        notes.append(f"budget {n} exceeds the {len(users)} users with a history; all of them are seeds")
        n = len(users)
    # A permutation cut to size, so a larger budget extends a smaller one, as in the adaptive sampler.
    chosen = np.random.default_rng(seed).permutation(users)[:n]
    return SeedSample(chosen.astype(np.int64), np.full(n, "uniform"), None, tuple(notes))
