"""Holistic evaluation of finished runs: `genrecsys evaluate --beyond`, `compare --beyond`
and the main job's "Beyond accuracy" section (a table across models and two plots)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genrecsys.errors import GenrecsysError
from genrecsys.eval.holistic import worst_group
from genrecsys.eval.report import plot_groups

TABLE_METRICS = ("ndcg@10", "coverage", "gini", "novelty", "ild_genre", "pop_lift", "longtail_share", "calibration_kl")


def seed_dirs(run: str | Path) -> list[Path]:
    """The seed runs of a multi-seed run directory (``seed-N``), else the run itself; a seed
    run counts when it has its weights or, without them (a benchmark's committed evidence),
    its saved ``beyond.json``."""
    d = Path(run)
    seeds = sorted(p for p in d.glob("seed-*") if (p / "model.pt").is_file() or (p / "beyond.json").is_file())
    return seeds or [d]


def run_holistic(run: str | Path, cache_dir: str | Path | None = None, k: int = 10,
                 all_seeds: bool = False) -> dict[str, Any]:
    """Beyond-accuracy metrics and group tables of a finished run's test lists, with its
    per-user NDCG@k and HR@k from per_user.parquet: the first seed of a multi-seed run, or
    with ``all_seeds`` the mean over its seeds (`mean_over_seeds`)."""
    dirs = seed_dirs(run)
    results = [_one_run(d, cache_dir, k) for d in (dirs if all_seeds else dirs[:1])]
    return results[0] if len(results) == 1 else mean_over_seeds(results)


def _one_run(d: Path, cache_dir: str | Path | None, k: int) -> dict[str, Any]:
    import json

    import pandas as pd

    metrics = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").is_file() else {}
    ranking = metrics.get("protocol", {}).get("ranking", "full")  # what the accuracy column measures
    if not (d / "model.pt").is_file() and (d / "beyond.json").is_file():
        # No weights to recompute from: the figures the run wrote when it finished, the same
        # lists and groups, without what needs the model's vectors (ild_embedding).
        saved = json.loads((d / "beyond.json").read_text())
        if saved.get("k") != k:
            raise GenrecsysError(f"{d} has no weights (model.pt) to recompute from, and its beyond.json is at "
                                 f"k={saved.get('k')}, not k={k}")
        return {**saved, "ranking": ranking, "seeds": 1, "source": "beyond.json"}

    from genrecsys.eval.holistic import holistic
    from genrecsys.experiment import load_run
    from genrecsys.generative.semantic_ids import cf_vectors
    from genrecsys.train.loop import score_fn

    cfg, split, model = load_run(d, cache_dir)
    model.eval()
    model.on_eval_start()
    try:
        cf = cf_vectors(model, split)
        vectors = np.vstack([np.zeros((1, cf.shape[1]), dtype=cf.dtype), cf])  # row 0: padding
    except GenrecsysError:
        vectors = None
    accuracy = None
    if (d / "per_user.parquet").is_file():
        frame = pd.read_parquet(d / "per_user.parquet")
        frame = frame[frame["stage"] == "test"].set_index("user")
        order = [str(u) for u in split.user_ids[split.eval_users("test")]]
        accuracy = {c: frame[c].reindex(order).to_numpy(dtype=float) for c in (f"ndcg@{k}", f"hit@{k}")
                    if c in frame.columns}
    res = holistic(score_fn(model), split, vectors=vectors, per_user_accuracy=accuracy, k=k,
                   max_len=cfg.data.max_seq_len, mask_seen=cfg.eval.mask_seen)
    res["ranking"] = ranking
    res["seeds"] = 1
    return res


def mean_over_seeds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Seed runs' results as one: each summary metric's mean (and ``summary_std``), each
    group's mean per metric with the gap of those means (no p: the seeds' tests differ)."""
    keys = [m for m in results[0]["summary"] if all(m in r["summary"] for r in results)]
    summary = {m: float(np.mean([r["summary"][m] for r in results])) for m in keys}
    std = {m: float(np.std([r["summary"][m] for r in results], ddof=1)) for m in keys}
    groups: dict[str, dict[str, dict[str, float]]] = {}
    for grouping, table in results[0]["groups"].items():
        for metric, row in table.items():
            names = [g for g in row if g not in ("gap", "p")]
            means = {g: float(np.nanmean([r["groups"].get(grouping, {}).get(metric, {}).get(g, np.nan)
                                          for r in results])) for g in names}
            finite = [v for v in means.values() if np.isfinite(v)]
            gap = max(finite) - min(finite) if finite else float("nan")
            groups.setdefault(grouping, {})[metric] = {**means, "gap": gap, "p": float("nan")}
    return {**results[0], "summary": summary, "summary_std": std, "groups": groups, "seeds": len(results)}


GROUPINGS = ("gender", "age", "occupation", "activity", "new_vs_warm")


def holistic_table(results: dict[str, dict[str, Any]],
                   groupings: tuple[str, ...] = GROUPINGS) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the benchmark's table: per run, its seeds and accuracy protocol, the
    TABLE_METRICS (mean ± std over seeds where there are several), and per grouping the
    worst group's NDCG@10 / best − worst gap."""
    rows = []
    for name, res in results.items():
        s, sd = res["summary"], res.get("summary_std", {})
        cells = [f"{s.get(m, float('nan')):.4f}" + (f" ± {sd[m]:.4f}" if m in sd else "") for m in TABLE_METRICS]
        for g in groupings:
            worst, value, gap = worst_group(res, g)
            cells.append(f"{worst} {value:.3f} / {gap:.3f}")
        rows.append([name, str(res.get("seeds", 1)), res.get("ranking", "full"), *cells])
    header = ["run", "seeds", "accuracy protocol", *TABLE_METRICS, *(f"{g}: worst NDCG@10 / gap" for g in groupings)]
    return header, rows


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
