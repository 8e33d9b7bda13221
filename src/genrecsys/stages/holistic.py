"""Holistic evaluation of finished runs: `genrecsys evaluate --beyond`, `compare --beyond`
and the main job's "Beyond accuracy" section (a table across models and two plots)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genrecsys.errors import GenrecsysError

TABLE_METRICS = ("ndcg@10", "coverage", "gini", "novelty", "ild_genre", "pop_lift", "longtail_share", "calibration_kl")


def run_holistic(run: str | Path, cache_dir: str | Path | None = None, k: int = 10) -> dict[str, Any]:
    """Beyond-accuracy metrics and group tables of a finished run's test lists (the first
    seed of a multi-seed run), with its per-user NDCG@k and HR@k from per_user.parquet."""
    import pandas as pd

    from genrecsys.eval.holistic import holistic
    from genrecsys.experiment import load_run
    from genrecsys.generative.semantic_ids import cf_vectors
    from genrecsys.train.loop import score_fn

    cfg, split, model = load_run(run, cache_dir)
    model.eval()
    model.on_eval_start()
    try:
        cf = cf_vectors(model, split)
        vectors = np.vstack([np.zeros((1, cf.shape[1]), dtype=cf.dtype), cf])  # row 0: padding
    except GenrecsysError:
        vectors = None
    d = Path(run)
    per_user = d / "per_user.parquet"
    if not per_user.is_file():
        per_user = min(d.glob("seed-*/per_user.parquet"), default=None)
    accuracy = None
    if per_user is not None:
        frame = pd.read_parquet(per_user)
        frame = frame[frame["stage"] == "test"].set_index("user")
        order = [str(u) for u in split.user_ids[split.eval_users("test")]]
        accuracy = {c: frame[c].reindex(order).to_numpy(dtype=float) for c in (f"ndcg@{k}", f"hit@{k}")
                    if c in frame.columns}
    return holistic(score_fn(model), split, vectors=vectors, per_user_accuracy=accuracy, k=k,
                    max_len=cfg.data.max_seq_len)


def worst_group(res: dict[str, Any], grouping: str, metric: str = "ndcg@10") -> tuple[str, float, float]:
    """(worst group, its value, best - worst gap) of ``metric`` under ``grouping``."""
    row = res["groups"].get(grouping, {}).get(metric)
    if not row:
        return "–", float("nan"), float("nan")
    groups = {g: v for g, v in row.items() if g not in ("gap", "p") and np.isfinite(v)}
    g = min(groups, key=groups.get)
    return g, groups[g], row["gap"]


def section(results: dict[str, dict[str, Any]], output_dir: Path, grouping: str = "activity") -> str:
    """The report section: one row per model, the trade-off plot and the best model's groups."""
    from genrecsys.eval.report import markdown_table

    rows = []
    for name, res in results.items():
        s = res["summary"]
        worst, value, gap = worst_group(res, grouping)
        rows.append([name, *(f"{s.get(m, float('nan')):.4f}" for m in TABLE_METRICS), f"{worst} {value:.4f}",
                     f"{gap:.4f}"])
    plot_tradeoffs(results, output_dir / "beyond.png")
    best = max(results, key=lambda n: results[n]["summary"].get("ndcg@10", float("-inf")))
    plot_groups(results[best], output_dir / "groups.png", title=f"{best}: test NDCG@10 by user group")
    header = ["model", *TABLE_METRICS, f"worst {grouping} group NDCG@10", "group gap"]
    return ("## Beyond accuracy\n\nTop-10 test lists of every model (first seed): catalog coverage, Gini of "
            "exposure, novelty (bits), intra-list genre diversity, popularity lift over the user's history, "
            "share outside the short head, genre calibration KL (definitions: `genrecsys.eval.beyond`); "
            f"the worst {grouping} group and the best−worst gap of NDCG@10 (`genrecsys evaluate RUN --beyond`).\n\n"
            + markdown_table(header, rows)
            + "\n![accuracy vs coverage and novelty](beyond.png)\n\n![NDCG@10 by user group](groups.png)\n")


def plot_tradeoffs(results: dict[str, dict[str, Any]], path: Path) -> None:
    """NDCG@10 against coverage, marker size = novelty, one labelled point per model."""
    from genrecsys.eval.report import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, res in results.items():
        s = res["summary"]
        x, y, nov = s.get("coverage", np.nan), s.get("ndcg@10", np.nan), s.get("novelty", 0.0)
        ax.scatter([x], [y], s=20 + 25 * max(nov, 0), alpha=0.6)
        ax.annotate(name, (x, y), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("catalog coverage@10")
    ax.set_ylabel("test NDCG@10")
    ax.set_title("accuracy vs coverage (marker size: novelty)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_groups(res: dict[str, Any], path: Path, title: str, metric: str = "ndcg@10",
                groupings: tuple[str, ...] = ("gender", "age", "activity", "new_vs_warm")) -> None:
    """Bars of ``metric`` per group, one panel per grouping present."""
    from genrecsys.eval.report import _pyplot

    plt = _pyplot()
    present = [g for g in groupings if metric in res["groups"].get(g, {})]
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(3.2 * max(len(present), 1), 3.4), dpi=110,
                             squeeze=False)
    for ax, grouping in zip(axes[0], present):
        row = res["groups"][grouping][metric]
        names = [g for g in row if g not in ("gap", "p")]
        ax.bar(names, [row[g] for g in names], color="#4a7fc1")
        ax.set_title(f"{grouping} (p {row['p']:.2g})", fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
