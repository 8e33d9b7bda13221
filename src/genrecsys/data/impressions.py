"""Impressions: the candidate lists a user was shown, with which of them were clicked.

Two sources, one `ImpressionSet`:

- **logged** (MIND): `impression_split` turns a dataset's impression log into a split
  whose validation and test stages are the logged impressions;
- **constructed** (datasets without impressions, e.g. ML-100K): `construct_impressions`
  builds, for each validation/test target, the list *clicked item + k sampled items the
  user never interacted with* (in any stage), drawn uniformly over the catalog or in
  proportion to training popularity, from a fixed seed. This is a constructed protocol,
  not logged exposure: negatives are items the user did not pick, not items the user
  saw and skipped, so absolute numbers are not comparable with MIND's.

Candidate order is shuffled (constructed) or kept as logged; metrics break score ties
by candidate order, so a model that scores everything alike gains nothing from it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genrecsys.data.schema import Dataset
from genrecsys.data.splits import Part, SplitData, concat_parts
from genrecsys.errors import GenrecsysError

SAMPLERS = ("uniform", "popularity")


@dataclass
class ImpressionSet:
    """Impression i shows items[indptr[i]:indptr[i+1]] (labels 1 = clicked) to users[i].

    `hist_len[i]`, when present, is how many items of the user's training sequence
    precede the impression (logged training impressions: its history for training).
    """

    users: np.ndarray  # (n,) int64
    indptr: np.ndarray  # (n+1,) int64
    items: np.ndarray  # (nnz,) int64, 1..n_items
    labels: np.ndarray  # (nnz,) int8
    source: str = ""
    hist_len: np.ndarray | None = None  # (n,) int64

    def __len__(self) -> int:
        return len(self.users)

    def sizes(self) -> np.ndarray:
        return np.diff(self.indptr)

    def owner(self) -> np.ndarray:
        """Impression index of every stored candidate."""
        return np.repeat(np.arange(len(self)), self.sizes())

    def select(self, keep: np.ndarray) -> "ImpressionSet":
        keep = np.asarray(keep, dtype=bool)
        rows = np.repeat(keep, self.sizes())
        sizes = self.sizes()[keep]
        return ImpressionSet(self.users[keep], np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                             self.items[rows], self.labels[rows], self.source,
                             None if self.hist_len is None else self.hist_len[keep])


def _sampling_weights(split: SplitData, sampler: str) -> np.ndarray | None:
    if sampler == "uniform":
        return None
    if sampler == "popularity":
        counts = np.bincount(split.train.items, minlength=split.n_items + 1).astype(np.float64)
        counts[0] = 0.0
        if counts.sum() == 0:
            raise GenrecsysError("popularity sampler: the training part is empty")
        return counts / counts.sum()
    raise GenrecsysError(f"unknown impression sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")


def construct_impressions(split: SplitData, stage: str, n_negatives: int = 24, sampler: str = "uniform",
                          seed: int = 0) -> ImpressionSet:
    """One impression per target of `stage`: the target plus `n_negatives` distinct items the
    user never interacted with (train, validation or test), candidates in random order.

    Users whose non-interacted items are fewer than `n_negatives` get all of them (or are
    skipped when there are none). The draw depends only on (split, stage, seed).

    >>> # construct_impressions(leave_one_out(load_ml100k()), "test", 24, "uniform", seed=0)
    """
    if n_negatives < 1:
        raise GenrecsysError("impressions need at least one negative per target")
    rng = np.random.default_rng([seed, {"valid": 1, "test": 2}[stage]])
    weights = _sampling_weights(split, sampler)
    allowed = np.ones(split.n_items + 1, dtype=bool) if weights is None else weights > 0
    allowed[0] = False
    everything = concat_parts(concat_parts(split.train, split.valid), split.test)
    targets = split.targets(stage)
    users, sizes, items, labels = [], [], [], []
    n_allowed = int(allowed.sum())
    for u in split.eval_users(stage):
        seen = np.unique(everything.of(u))
        free = n_allowed - int(allowed[seen].sum())
        k = min(n_negatives, free)
        if k <= 0:
            continue
        for t in targets.of(u):
            cand = np.concatenate([[t], _draw(rng, split.n_items, weights, allowed, seen, k)])
            lab = np.zeros(len(cand), dtype=np.int8)
            lab[0] = 1
            order = rng.permutation(len(cand))
            users.append(u)
            sizes.append(len(cand))
            items.append(cand[order])
            labels.append(lab[order])
    indptr = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
    return ImpressionSet(np.asarray(users, dtype=np.int64), indptr,
                         np.concatenate(items).astype(np.int64) if items else np.zeros(0, np.int64),
                         np.concatenate(labels) if labels else np.zeros(0, np.int8),
                         f"constructed: 1 clicked + {n_negatives} {sampler} non-interacted items, seed {seed}")


def _draw(rng: np.random.Generator, n_items: int, weights: np.ndarray | None, allowed: np.ndarray,
          seen: np.ndarray, k: int) -> np.ndarray:
    """k distinct allowed items outside `seen`: rejection sampling, exact choice when the
    free pool is small (rejection would loop)."""
    blocked = np.zeros(n_items + 1, dtype=bool)
    blocked[seen] = True
    blocked |= ~allowed
    free = n_items + 1 - int(blocked.sum())
    if free <= 4 * k:
        pool = np.flatnonzero(~blocked)
        p = None if weights is None else weights[pool] / weights[pool].sum()
        return rng.choice(pool, size=k, replace=False, p=p)
    out: list[int] = []
    while len(out) < k:
        draw = rng.choice(n_items + 1, size=2 * k, p=weights) if weights is not None else rng.integers(1, n_items + 1, 2 * k)
        for i in draw:
            if not blocked[i]:
                blocked[i] = True
                out.append(int(i))
                if len(out) == k:
                    break
    return np.asarray(out, dtype=np.int64)


def impressions_for(split: SplitData, stage: str, n_negatives: int = 24, sampler: str = "uniform",
                    seed: int = 0) -> ImpressionSet:
    """The impressions a model is scored on at `stage`: the logged ones when the split has
    them (`impression_split`), else constructed ones (cached on the split)."""
    logged = split.meta.get("impressions")
    if logged is not None:
        return logged[stage]
    key = ("constructed_impressions", stage, n_negatives, sampler, seed)
    if key not in split.meta:
        split.meta[key] = construct_impressions(split, stage, n_negatives, sampler, seed)
    return split.meta[key]


# ----------------------------------------------------------------------------- logged
def impression_split(ds: Dataset) -> SplitData:
    """A split along the dataset's impression log (MIND).

    Stages: with a labelled ``test`` part, train/dev/test are training/validation/test;
    with ``train`` and ``dev``, the dev impressions are cut in time into halves — the
    earlier half validates, the later half tests; with one part only, impressions are
    cut in time 80/10/10. Training sequences are each user's history-column news then
    the clicks of their training impressions in time order; the validation (test)
    stage holds the clicks of its impressions. Only impressions with at least one click
    and one non-click are evaluated; unlabelled impressions are dropped.
    """
    if ds.impressions is None:
        raise GenrecsysError(f"{ds.name}: split 'impressions' needs logged impressions (MIND format); "
                             "use split 'loo' for constructed impressions")
    imp = ds.impressions
    imp = imp[imp["label"] >= 0].reset_index(drop=True)
    if len(imp) == 0:
        raise GenrecsysError(f"{ds.name}: no labelled impressions")
    stage_of, how = _impression_stages(imp)
    imp = imp.assign(stage=imp["impression"].map(stage_of))
    clicks = imp[imp["label"] == 1]
    # Interactions that are not impression clicks are the users' reading histories.
    hist = ds.interactions.merge(clicks[["user", "item", "timestamp"]].drop_duplicates(), how="left",
                                 on=["user", "item", "timestamp"], indicator=True)
    hist = hist[hist["_merge"] == "left_only"]
    user_ids = np.asarray(sorted(set(hist["user"]) | set(imp["user"])), dtype=str)
    item_ids = np.concatenate([[""], np.asarray(sorted(set(hist["item"]) | set(imp["item"])), dtype=str)])
    uidx = pd.Index(user_ids)
    iidx = pd.Index(item_ids)
    n_users = len(user_ids)

    # Impression table in index space, in time order (ties: file order).
    order = np.lexsort((np.arange(len(imp)), imp["timestamp"].to_numpy()))
    imp = imp.iloc[order].reset_index(drop=True)
    imp_u = uidx.get_indexer(imp["user"])
    imp_i = iidx.get_indexer(imp["item"])
    hu = uidx.get_indexer(hist["user"])
    hi = iidx.get_indexer(hist["item"])
    hist_counts = np.bincount(hu, minlength=n_users)

    parts = {}
    for stage in ("train", "valid", "test"):
        sel = (imp["stage"] == stage).to_numpy() & (imp["label"] == 1).to_numpy()
        u, i = imp_u[sel], imp_i[sel]
        if stage == "train":
            u = np.concatenate([hu, u])
            i = np.concatenate([hi, i])
        o = np.argsort(u, kind="stable")
        parts[stage] = Part(np.concatenate([[0], np.cumsum(np.bincount(u, minlength=n_users))]).astype(np.int64),
                            i[o].astype(np.int64))
    meta = {"impressions": {}, "impression_stages": how}
    for stage in ("train", "valid", "test"):
        sel = (imp["stage"] == stage).to_numpy()
        meta["impressions"][stage] = _to_set(imp[sel], imp_u[sel], imp_i[sel], hist_counts, stage)
    keep = {s: _evaluable(meta["impressions"][s]) for s in ("valid", "test")}
    meta["train_impressions"] = meta["impressions"].pop("train")
    meta["impressions"] = {s: meta["impressions"][s].select(keep[s]) for s in keep}
    return SplitData(ds, user_ids, item_ids, parts["train"], parts["valid"], parts["test"], protocol="impressions",
                     meta=meta)


def _impression_stages(imp: pd.DataFrame) -> tuple[pd.Series, str]:
    """impression id -> train/valid/test, and a description of the rule used."""
    first = imp.drop_duplicates("impression")[["impression", "timestamp", "part"]].reset_index(drop=True)
    first = first.iloc[np.lexsort((np.arange(len(first)), first["timestamp"].to_numpy()))]
    parts = set(first["part"])
    stage = pd.Series("train", index=first["impression"].to_numpy(), dtype=object)
    if "test" in parts:
        stage[first["part"].to_numpy() == "dev"] = "valid"
        stage[first["part"].to_numpy() == "test"] = "test"
        how = "train / dev / test parts"
    else:
        pool = first[first["part"] == "dev"] if "dev" in parts else first
        n = len(pool)
        cut_valid = 0 if "dev" in parts else int(np.floor(0.8 * n))
        cut_test = n // 2 if "dev" in parts else int(np.floor(0.9 * n))
        ids = pool["impression"].to_numpy()
        stage[ids[cut_valid:cut_test]] = "valid"
        stage[ids[cut_test:]] = "test"
        how = "train part; dev cut in time into valid / test halves" if "dev" in parts else "one part cut in time 80/10/10"
    return stage, how


def _to_set(frame: pd.DataFrame, u: np.ndarray, i: np.ndarray, hist_counts: np.ndarray, stage: str) -> ImpressionSet:
    codes, _ = pd.factorize(frame["impression"], sort=False)  # first-appearance order = time order
    o = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=codes.max() + 1 if len(codes) else 0)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    users = u[o][starts[:-1]] if len(sizes) else np.zeros(0, np.int64)
    labels = frame["label"].to_numpy()[o].astype(np.int8)
    hist_len = None
    if stage == "train":
        # clicks of earlier training impressions of the same user come before this one's
        clicks = np.add.reduceat(labels.astype(np.int64), starts[:-1]) if len(sizes) else np.zeros(0, np.int64)
        prior = pd.Series(clicks).groupby(users).cumsum().to_numpy() - clicks
        hist_len = hist_counts[users] + prior
    return ImpressionSet(users.astype(np.int64), starts, i[o].astype(np.int64), labels, "logged", hist_len)


def _evaluable(s: ImpressionSet) -> np.ndarray:
    owner = s.owner()
    pos = np.bincount(owner, weights=s.labels == 1, minlength=len(s))
    return (pos > 0) & (pos < s.sizes())
