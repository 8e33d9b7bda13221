"""Markdown reports and plots for runs and comparisons."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

HEADLINE = ("hit@10", "ndcg@10", "mrr@10")


def aggregate_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std over seeds: `test`/`valid` hold means, `*_std` the stds."""
    out: dict[str, Any] = {"model": runs[0]["model"], "dataset": runs[0]["dataset"],
                           "protocol": runs[0]["protocol"], "seeds": [r["seed"] for r in runs]}
    for stage in ("test", "valid"):
        keys = runs[0][stage].keys()
        vals = {k: np.array([r[stage][k] for r in runs], dtype=np.float64) for k in keys}
        out[stage] = {k: float(v.mean()) for k, v in vals.items()}
        out[f"{stage}_std"] = {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in vals.items()}
    for key in ("train_seconds", "seconds_to_best", "seconds_per_epoch", "epochs", "best_epoch"):
        if key in runs[0]:
            v = np.array([r[key] for r in runs], dtype=np.float64)
            out[key] = float(v.mean())
            out[f"{key}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    out["runs"] = runs
    return out


def fmt_mean_std(mean: float, std: float | None = None, digits: int = 4) -> str:
    return f"{mean:.{digits}f}" if not std else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: Path, ylabel: str = "valid ndcg@10") -> None:
    """One line per name: (epoch, value) points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for name, pts in curves.items():
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=name, marker="." if len(pts) < 30 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(curves) > 1 or any(curves.values()):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def valid_curve(history: list[dict[str, Any]], metric: str = "ndcg@10") -> list[tuple[int, float]]:
    return [(h["epoch"] + 1, h["valid"][metric]) for h in history if h.get("valid")]


def write_run_report(run_dir: Path, metrics: dict[str, Any], history: list[dict[str, Any]]) -> Path:
    ks = sorted({int(k.split("@")[1]) for k in metrics["test"]})
    names = ("hit", "ndcg", "mrr", "recall")
    rows = [[stage] + [f"{metrics[stage][f'{n}@{k}']:.4f}" for n in names for k in ks if f"{n}@{k}" in metrics[stage]]
            for stage in ("valid", "test")]
    header = ["stage"] + [f"{n}@{k}" for n in names for k in ks if f"{n}@{k}" in metrics["test"]]
    plot_curves({metrics["model"]: valid_curve(history)}, run_dir / "curve.png")
    text = (
        f"# {metrics['model']} on {metrics['dataset']} (seed {metrics['seed']})\n\n"
        f"Protocol: {metrics['protocol']}. Best epoch {metrics['best_epoch'] + 1} of {metrics['epochs']} "
        f"({metrics['stopped_by']}); training {metrics['train_seconds']:.1f} s, "
        f"{metrics['seconds_per_epoch']:.2f} s/epoch.\n\n"
        + markdown_table(header, rows)
        + "\n![validation curve](curve.png)\n"
    )
    path = run_dir / "report.md"
    path.write_text(text)
    return path
