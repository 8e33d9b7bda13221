"""Beyond-accuracy metrics of recommendation lists, and the same figures per user group.

Inputs are plain arrays: ``lists`` (U, K) item indices per user (-1 pads a shorter list),
``popularity`` (I+1,) training interactions per item (index 0 = padding), ``n_users``,
item ``genres`` as a list of sets, optional item ``vectors`` (I+1, d), and each user's
history as index arrays. Per-user metrics are NaN where they are undefined (intra-list
diversity of a list shorter than two, popularity lift of a user without history) and are
averaged over the users that define them.

Definitions (the usual ones in the literature, stated here because papers differ):
- coverage@K: distinct recommended items / catalog size.
- Gini of exposure: Gini coefficient of how often each catalog item is recommended
  (0 = every item equally, 1 = one item takes all).
- novelty: mean self-information -log2 p(i) of a list's items, p(i) = (pop_i + 1) / (n_users + 1).
- ILD (genre): mean pairwise Jaccard distance of the items' genre sets; ILD (embedding):
  mean pairwise cosine distance of their vectors.
- ARP: mean training popularity of a list's items; popularity lift: ARP / mean popularity of
  the user's history - 1 (Abdollahpouri et al.'s lift, per user).
- long-tail share: fraction of a list's items outside the *short head* — the most popular
  items that together hold 20% of training interactions.
- genre calibration (Steck, RecSys'18): KL(p || q~) between the genre distribution of the
  user's history p and of the list q, q~ = (1 - 0.01) q + 0.01 p; 0 = perfectly calibrated.

>>> lists = np.array([[1, 2], [1, 3]])
>>> coverage(lists, n_items=4)
0.75
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HEAD_SHARE = 0.2  # the short head holds this share of training interactions
CALIBRATION_ALPHA = 0.01


def _rows(lists: np.ndarray) -> list[np.ndarray]:
    return [row[row > 0] for row in np.asarray(lists)]


def coverage(lists: np.ndarray, n_items: int) -> float:
    items = np.unique(np.asarray(lists)[np.asarray(lists) > 0])
    return float(len(items) / n_items) if n_items else float("nan")


def exposure(lists: np.ndarray, n_items: int) -> np.ndarray:
    """(I+1,) times each item is recommended (index 0 unused)."""
    flat = np.asarray(lists).ravel()
    return np.bincount(flat[flat > 0], minlength=n_items + 1)


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: equal; (n-1)/n: one holds everything).

    >>> gini(np.array([1, 1, 1, 1])), gini(np.array([0, 0, 0, 4]))
    (0.0, 0.75)
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return float("nan")
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * total))


def gini_of_exposure(lists: np.ndarray, n_items: int) -> float:
    return gini(exposure(lists, n_items)[1:])


def novelty(lists: np.ndarray, popularity: np.ndarray, n_users: int) -> np.ndarray:
    """(U,) mean self-information of each list's items (NaN for an empty list)."""
    info = -np.log2((np.asarray(popularity, dtype=np.float64) + 1) / (n_users + 1))
    return np.array([info[r].mean() if len(r) else np.nan for r in _rows(lists)])


def _mean_pairwise(distance: np.ndarray) -> float:
    n = len(distance)
    if n < 2:
        return float("nan")
    return float(distance[np.triu_indices(n, k=1)].mean())


def ild_genres(lists: np.ndarray, genres: Sequence[set]) -> np.ndarray:
    """(U,) mean pairwise Jaccard distance of genre sets (two genre-less items: distance 0)."""
    out = []
    for r in _rows(lists):
        sets = [genres[i] for i in r]
        d = np.array([[1 - len(a & b) / len(a | b) if a | b else 0.0 for b in sets] for a in sets])
        out.append(_mean_pairwise(d))
    return np.array(out)


def ild_vectors(lists: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(U,) mean pairwise cosine distance of the items' vectors."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return np.array([_mean_pairwise(1 - v[r] @ v[r].T) for r in _rows(lists)])


def arp(lists: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """(U,) average recommended popularity."""
    pop = np.asarray(popularity, dtype=np.float64)
    return np.array([pop[r].mean() if len(r) else np.nan for r in _rows(lists)])


def popularity_lift(lists: np.ndarray, popularity: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
    """(U,) ARP / mean popularity of the user's history - 1 (NaN without history)."""
    pop = np.asarray(popularity, dtype=np.float64)
    rec = arp(lists, popularity)
    prof = np.array([pop[h].mean() if len(h) else np.nan for h in histories])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(prof > 0, rec / prof - 1, np.nan)


def short_head(popularity: np.ndarray, share: float = HEAD_SHARE) -> np.ndarray:
    """(I+1,) bool: the most popular items that together hold ``share`` of interactions
    (at least one item when there are any interactions)."""
    pop = np.asarray(popularity, dtype=np.float64).copy()
    pop[0] = 0
    order = np.argsort(-pop, kind="stable")
    cum = np.cumsum(pop[order])
    head = np.zeros(len(pop), dtype=bool)
    if cum[-1] > 0:
        n_head = int(np.searchsorted(cum, share * cum[-1]) + 1)
        head[order[:n_head]] = True
    return head


def longtail_share(lists: np.ndarray, popularity: np.ndarray, share: float = HEAD_SHARE) -> np.ndarray:
    """(U,) fraction of each list's items outside the short head."""
    head = short_head(popularity, share)
    return np.array([(~head[r]).mean() if len(r) else np.nan for r in _rows(lists)])


def _genre_distribution(items: np.ndarray, genres: Sequence[set], names: list[str]) -> np.ndarray:
    index = {g: j for j, g in enumerate(names)}
    p = np.zeros(len(names))
    for i in items:
        if genres[i]:
            for g in genres[i]:
                p[index[g]] += 1 / len(genres[i])
    return p / p.sum() if p.sum() else p


def calibration_kl(lists: np.ndarray, histories: Sequence[np.ndarray], genres: Sequence[set],
                   alpha: float = CALIBRATION_ALPHA) -> np.ndarray:
    """(U,) KL(p || (1 - alpha) q + alpha p) of history vs list genre distributions (NaN when
    either side has no genres)."""
    names = sorted(set().union(*genres)) if len(genres) else []
    out = []
    for r, h in zip(_rows(lists), histories):
        p, q = _genre_distribution(h, genres, names), _genre_distribution(r, genres, names)
        if not p.sum() or not q.sum():
            out.append(np.nan)
            continue
        q = (1 - alpha) * q + alpha * p
        nz = p > 0
        out.append(float((p[nz] * np.log(p[nz] / q[nz])).sum()))
    return np.array(out)


def beyond_accuracy(lists: np.ndarray, popularity: np.ndarray, n_users: int, genres: Sequence[set],
                    histories: Sequence[np.ndarray], vectors: np.ndarray | None = None) -> dict[str, np.ndarray | float]:
    """Every metric above: catalog-level floats and per-user (U,) arrays."""
    n_items = len(popularity) - 1
    out: dict[str, np.ndarray | float] = {
        "coverage": coverage(lists, n_items), "gini": gini_of_exposure(lists, n_items),
        "novelty": novelty(lists, popularity, n_users), "ild_genre": ild_genres(lists, genres),
        "arp": arp(lists, popularity), "pop_lift": popularity_lift(lists, popularity, histories),
        "longtail_share": longtail_share(lists, popularity), "calibration_kl": calibration_kl(lists, histories, genres),
    }
    if vectors is not None:
        out["ild_embedding"] = ild_vectors(lists, vectors)
    return out


def summary(values: dict[str, np.ndarray | float]) -> dict[str, float]:
    """Catalog-level figures as they are; per-user arrays as their mean over defined users."""
    return {k: (float(np.nanmean(v)) if isinstance(v, np.ndarray) and np.isfinite(v).any() else
                (float("nan") if isinstance(v, np.ndarray) else float(v))) for k, v in values.items()}


# ---------------------------------------------------------------------------- groups
def group_table(per_user: dict[str, np.ndarray], groups: np.ndarray) -> dict[str, dict[str, float]]:
    """metric -> {group: mean over its users (NaN-aware), "gap": best - worst, "p": Kruskal–Wallis
    p-value that the groups share one distribution}."""
    from scipy.stats import kruskal

    groups = np.asarray(groups).astype(str)
    names = sorted(set(groups))
    out = {}
    for metric, values in per_user.items():
        v = np.asarray(values, dtype=np.float64)
        row = {}
        samples = []
        for g in names:
            x = v[(groups == g) & np.isfinite(v)]
            row[g] = float(x.mean()) if len(x) else float("nan")
            if len(x):
                samples.append(x)
        means = [row[g] for g in names if np.isfinite(row[g])]
        row["gap"] = float(max(means) - min(means)) if len(means) > 1 else float("nan")
        pooled = np.concatenate(samples) if samples else np.array([])
        if len(samples) < 2:
            row["p"] = float("nan")
        elif np.ptp(pooled) == 0:  # every value identical: nothing tells the groups apart
            row["p"] = 1.0
        else:
            row["p"] = float(kruskal(*samples).pvalue)
        out[metric] = row
    return out


def age_band(age: str | float) -> str:
    """ML-100K ages in the bands MovieLens-1M uses: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+.

    >>> age_band("24"), age_band(56), age_band("x")
    ('18-24', '56+', 'unknown')
    """
    try:
        a = float(age)
    except (TypeError, ValueError):
        return "unknown"
    for upper, name in ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55")):
        if a < upper:
            return name
    return "56+"


def activity_quartile(counts: np.ndarray) -> np.ndarray:
    """(U,) "Q1".."Q4" by training interactions (Q1 the least active)."""
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.quantile(counts, [0.25, 0.5, 0.75])
    return np.array([f"Q{int(np.searchsorted(edges, c, side='left')) + 1}" for c in counts])
