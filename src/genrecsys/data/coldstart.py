"""Cold-start simulation: give a fraction of evaluable users a short training history.

Which items a truncated user keeps: the most recent ones, i.e. the last `L` training
items, those chronologically closest to the validation item. A real new user's few
interactions are also the ones just before the prediction, and keeping the tail keeps
the sequential signal that next-item models rely on; keeping the head would open a
time gap between history and target that real cold users do not have.

Only the training part is cut. Validation and test targets are unchanged, so at test
time a new user's history is the truncated train items plus the validation item.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from genrecsys.data.splits import Part, SplitData
from genrecsys.errors import GenrecsysError


@dataclass
class ColdStart:
    split: SplitData  # a new split; the input split is left untouched
    new_user: np.ndarray  # (U,) bool, True for the simulated new users


def simulate_cold_start(split: SplitData, fraction: float, min_len: int = 1, max_len: int = 4,
                        seed: int = 0) -> ColdStart:
    """Truncate the training history of `fraction` of the evaluable users.

    Evaluable users are those with a test target. Each chosen user gets a length drawn
    uniformly from [min_len, max_len] and keeps its last that-many training items;
    a chosen user whose history already has <= max_len items is left as is but is
    still flagged in `new_user`. Same inputs and seed -> same result.

    >>> cold = simulate_cold_start(leave_one_out(ds), 0.2, seed=0)   # doctest: +SKIP
    >>> cold.new_user.sum(), cold.split.train.lengths()[cold.new_user].max()   # doctest: +SKIP
    """
    if not 0.0 <= fraction <= 1.0:
        raise GenrecsysError(f"cold start: fraction must be in [0, 1], got {fraction}")
    if not 1 <= min_len <= max_len:
        raise GenrecsysError(f"cold start: need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    rng = np.random.default_rng(seed)
    evaluable = split.eval_users("test")
    chosen = np.sort(rng.choice(evaluable, size=int(round(fraction * len(evaluable))), replace=False))
    # Draw a length for every chosen user, so the draws do not depend on history lengths.
    drawn = rng.integers(min_len, max_len + 1, size=len(chosen))

    lengths = split.train.lengths()
    keep = lengths.copy()
    long = lengths[chosen] > max_len
    keep[chosen[long]] = drawn[long]

    # Keep position p of user u iff p >= len(u) - keep(u), i.e. the last keep(u) items.
    pos = np.arange(split.train.nnz) - np.repeat(split.train.indptr[:-1], lengths)
    mask = pos >= np.repeat(lengths - keep, lengths)
    train = Part(np.concatenate([[0], np.cumsum(keep)]).astype(np.int64), split.train.items[mask])

    new_user = np.zeros(split.n_users, dtype=bool)
    new_user[chosen] = True
    meta = dict(split.meta)
    meta["cold_start"] = {"fraction": fraction, "min_len": min_len, "max_len": max_len, "seed": seed,
                          "n_new": int(len(chosen))}
    new_split = dataclasses.replace(split, train=train, valid=_copy(split.valid), test=_copy(split.test), meta=meta)
    return ColdStart(new_split, new_user)


def _copy(part: Part) -> Part:
    # The new split owns its arrays, so editing it in place cannot reach the input.
    return Part(part.indptr.copy(), part.items.copy())
