"""Holistic evaluation of one model's lists: beyond-accuracy metrics and every metric per
user group (ML-100K gender, age band, occupation; activity quartile; new vs warm), with the
gap between the best and the worst group and a Kruskal–Wallis test of it.

The caller loads the run and passes a score function (``train.loop.score_fn(model)``), the
split, the model's item vectors if it has any, and the run's per-user accuracy: `eval`
stays below `train`, `generative` and `experiment` in the import order.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from genrecsys.eval import beyond

NEW_USER_MAX = 20  # "new" users: at most this many training interactions (ML-100K's minimum is 20)
GROUP_COLUMNS = {"gender": "gender", "age": "age", "occupation": "occupation"}


def user_groups(split, users: np.ndarray) -> dict[str, np.ndarray]:
    """grouping name -> (U,) group label of each user in ``users`` (indices)."""
    counts = split.train.lengths()[users]
    out = {"activity": beyond.activity_quartile(counts),
           "new_vs_warm": np.where(counts <= NEW_USER_MAX, "new", "warm")}
    table = split.dataset.users
    if "user" in table.columns:
        rows = table.set_index(table["user"].astype(str)).reindex([str(split.user_ids[u]) for u in users])
        for name, col in GROUP_COLUMNS.items():
            if col in rows.columns and rows[col].notna().any():
                values = rows[col].fillna("unknown").astype(str).to_numpy()
                out[name] = np.array([beyond.age_band(a) for a in values]) if name == "age" else values
    return out


def item_genres(split) -> list[set]:
    """(I+1,) genre sets ('|'-separated `genres`, else `category`/`categories`)."""
    items = split.dataset.items
    col = next((c for c in ("genres", "categories", "category") if c in items.columns), None)
    if col is None:
        return [set() for _ in range(split.n_items + 1)]
    by_id = dict(zip(items["item"].astype(str), items[col].fillna("").astype(str)))
    return [set()] + [{g for g in by_id.get(str(i), "").split("|") if g} for i in split.item_ids[1:]]


def holistic(score, split, *, vectors: np.ndarray | None = None,
             per_user_accuracy: dict[str, np.ndarray] | None = None, k: int = 10, stage: str = "test",
             max_len: int = 50, mask_seen: bool = True,
             lists: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """{"summary": metric -> value, "groups": grouping -> metric -> {group: mean, gap, p}, "users": U}.

    ``score``: (users, seqs) -> (B, I+1) scores; ``vectors``: (I+1, d) item vectors for the
    embedding ILD (row 0 padding), or None; ``per_user_accuracy``: metric -> (U,) values in
    the evaluator's user order (the run's per_user.parquet for ``stage``), added to the
    group tables; ``lists``: (users (U,), top-k items (U, >= k)) the evaluator already ranked
    (`RankingResult.users`, `.lists`), else ``score`` ranks them here."""
    from genrecsys.errors import GenrecsysError
    from genrecsys.eval.ranking import top_k_lists

    if lists is not None:
        users, lists = lists[0], lists[1][:, :k]
    else:
        users, lists = top_k_lists(score, split, stage, k, max_len=max_len, mask_seen=mask_seen)
    popularity = np.bincount(split.train.items, minlength=split.n_items + 1)
    history = split.history(stage)
    values = beyond.beyond_accuracy(lists, popularity, split.n_users, item_genres(split),
                                    [history.of(u) for u in users], vectors)
    per_user = {m: v for m, v in values.items() if isinstance(v, np.ndarray)}
    for m, v in (per_user_accuracy or {}).items():
        if len(v) != len(users):
            raise GenrecsysError(f"per-user {m} has {len(v)} values for {len(users)} evaluated users")
        per_user[m] = np.asarray(v, dtype=np.float64)
    summary = beyond.summary(values)
    summary.update({m: float(np.nanmean(v)) for m, v in (per_user_accuracy or {}).items()})
    groups = {name: beyond.group_table(per_user, labels) for name, labels in user_groups(split, users).items()}
    return {"summary": summary, "groups": groups, "users": len(users), "k": k}


def worst_group(res: dict[str, Any], grouping: str, metric: str = "ndcg@10") -> tuple[str, float, float]:
    """(worst group, its value, best - worst gap) of ``metric`` under ``grouping``."""
    row = res["groups"].get(grouping, {}).get(metric)
    if not row:
        return "–", float("nan"), float("nan")
    groups = {g: v for g, v in row.items() if g not in ("gap", "p") and np.isfinite(v)}
    if not groups:
        return "–", float("nan"), float("nan")
    g = min(groups, key=groups.get)
    return g, groups[g], row["gap"]
