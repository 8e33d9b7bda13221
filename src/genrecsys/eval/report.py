"""Markdown reports and plots for runs and comparisons."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genrecsys.machine import cpu_summary

HEADLINE = ("hit@10", "ndcg@10", "mrr@10")


def aggregate_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std over seeds: `test`/`valid` hold means, `*_std` the stds.

    A metric is averaged over the seeds that define it: a seed may leave a slice metric
    out (an empty long-tail slice) or report it as NaN (an impression group without
    impressions). A metric no seed defines is NaN.
    """
    out: dict[str, Any] = {"model": runs[0]["model"], "dataset": runs[0]["dataset"],
                           "protocol": runs[0]["protocol"], "seeds": [r["seed"] for r in runs]}
    for stage in ("test", "valid"):
        keys = dict.fromkeys(k for r in runs for k in r[stage])  # union, in first-seen order
        vals = {k: _defined([r[stage].get(k, np.nan) for r in runs]) for k in keys}
        out[stage] = {k: float(v.mean()) if len(v) else float("nan") for k, v in vals.items()}
        out[f"{stage}_std"] = {k: float(v.std(ddof=1)) if len(v) > 1 else (0.0 if len(v) else float("nan"))
                               for k, v in vals.items()}
    for key in ("train_seconds", "seconds_to_best", "seconds_per_epoch", "epochs", "best_epoch"):
        if key in runs[0]:
            v = np.array([r[key] for r in runs], dtype=np.float64)
            out[key] = float(v.mean())
            out[f"{key}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    out["runs"] = runs
    return out


def _defined(values: list[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[~np.isnan(v)]


def fmt_mean_std(mean: float, std: float | None = None, digits: int = 4) -> str:
    return f"{mean:.{digits}f}" if not std else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def run_environment(**extra: Any) -> dict[str, Any]:
    """What a measurement ran with, for a benchmark's JSON: the exact command, the commit
    (``+dirty`` when tracked files differ from it; empty outside a git checkout), Python,
    torch and numpy versions, the machine, its CPUs and load average; ``extra`` adds the
    benchmark's own settings.

    >>> env = run_environment(threads=2)
    >>> env["threads"], sorted(k for k in env if k in ("command", "commit", "python", "torch", "cpus"))
    (2, ['command', 'commit', 'cpus', 'python', 'torch'])
    """
    import os
    import platform
    import subprocess
    import sys

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=here, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch = version("torch")  # from the metadata: importing torch here would cost seconds
    except PackageNotFoundError:
        torch = None
    return {"command": " ".join(["python", *sys.argv]), "commit": commit, "python": platform.python_version(),
            "torch": torch, "numpy": np.__version__, "machine": platform.machine(),
            **cpu_summary(), "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()], **extra}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: Path, ylabel: str = "valid ndcg@10") -> None:
    """One line per name: (epoch, value) points."""
    plt = _pyplot()
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


IMPRESSION_HEADLINE = tuple(f"{g}{m}" for g in ("", "new_", "warm_") for m in ("auc", "mrr", "ndcg@5", "ndcg@10"))


def write_run_report(run_dir: Path, metrics: dict[str, Any], history: list[dict[str, Any]],
                     beyond: dict[str, Any] | None = None) -> Path:
    """report.md (and curve.png) of one run; ``beyond``: `eval.holistic.holistic`'s result,
    written as a section with groups.png."""
    if metrics["protocol"].get("ranking") == "impressions":
        header = ["stage"] + [k for k in IMPRESSION_HEADLINE if k in metrics["test"]]
        rows = [[stage] + [f"{metrics[stage][k]:.4f}" for k in header[1:]] for stage in ("valid", "test")]
    else:
        names = ("hit", "ndcg", "mrr", "recall")
        ks = sorted({int(k.split("@")[1]) for k in metrics["test"] if k.split("@")[0] in names})
        rows = [[stage] + [f"{metrics[stage][f'{n}@{k}']:.4f}" for n in names for k in ks if f"{n}@{k}" in metrics[stage]]
                for stage in ("valid", "test")]
        header = ["stage"] + [f"{n}@{k}" for n in names for k in ks if f"{n}@{k}" in metrics["test"]]
    selected = metrics.get("selection_metric", "ndcg@10")
    plot_curves({metrics["model"]: valid_curve(history, selected)}, run_dir / "curve.png", ylabel=f"valid {selected}")
    text = (
        f"# {metrics['model']} on {metrics['dataset']} (seed {metrics['seed']})\n\n"
        f"Protocol: {metrics['protocol']}. Best epoch {metrics['best_epoch'] + 1} of {metrics['epochs']} "
        f"({metrics['stopped_by']}); training {metrics['train_seconds']:.1f} s, "
        f"{metrics['seconds_per_epoch']:.2f} s/epoch.\n\n"
        + markdown_table(header, rows)
        + longtail_section(metrics)
        + "\n![validation curve](curve.png)\n"
        + (beyond_section(beyond, run_dir) if beyond else "")
    )
    path = run_dir / "report.md"
    path.write_text(text)
    return path


def plot_groups(res: dict[str, Any], path: Path, title: str, metric: str = "ndcg@10",
                groupings: tuple[str, ...] = ("gender", "age", "activity", "new_vs_warm")) -> None:
    """Bars of ``metric`` per group, one panel per grouping present."""
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


BEYOND_COLUMNS = (("coverage", "coverage"), ("gini", "Gini"), ("novelty", "novelty (bits)"),
                  ("ild_genre", "ILD (genre)"), ("pop_lift", "pop. lift"), ("longtail_share", "long-tail share"),
                  ("calibration_kl", "calibration KL"))


def beyond_section(beyond: dict[str, Any], run_dir: Path) -> str:
    """The run report's beyond-accuracy paragraph: the list metrics, each user grouping's
    worst group and best-worst gap of NDCG@k (Kruskal-Wallis p), and groups.png."""
    from genrecsys.eval.holistic import worst_group

    k = beyond.get("k", 10)
    s = beyond["summary"]
    text = (f"\n## Beyond accuracy (test top-{k} lists)\n\nDefinitions: `genrecsys.eval.beyond`; all groups and "
            "metrics in beyond.json.\n\n"
            + markdown_table([label for _, label in BEYOND_COLUMNS],
                             [[f"{s[m]:.4f}" if m in s else "–" for m, _ in BEYOND_COLUMNS]]))
    metric = f"ndcg@{k}"
    rows = []
    for grouping, table in beyond["groups"].items():
        if metric in table:
            worst, value, gap = worst_group(beyond, grouping, metric)
            rows.append([grouping, worst, f"{value:.4f}", f"{gap:.4f}", f"{table[metric]['p']:.2g}"])
    if rows:
        text += "\n" + markdown_table(["user grouping", "worst group", f"its NDCG@{k}", "best - worst", "p"], rows)
        plot_groups(beyond, run_dir / "groups.png", title=f"test NDCG@{k} by user group", metric=metric)
        text += "\n![NDCG by user group](groups.png)\n"
    return text


def longtail_section(metrics: dict[str, Any]) -> str:
    """The long-tail slice of a full-ranking run as a Markdown paragraph and table
    (stage, users, longtail_hit@k, longtail_ndcg@k); "" when the run has no slice. A stage
    whose slice is empty shows 0 users and "—"."""
    if "longtail_users" not in metrics["test"]:
        return ""
    from genrecsys.eval.ranking import LONGTAIL_METRICS

    ks = sorted({int(k.split("@")[1]) for stage in ("valid", "test") for k in metrics[stage]
                 if k.startswith("longtail_") and "@" in k})
    keys = [f"longtail_{n}@{k}" for n in LONGTAIL_METRICS for k in ks]
    rows = [[stage, int(metrics[stage].get("longtail_users", 0))]
            + [f"{metrics[stage][k]:.4f}" if k in metrics[stage] else "—" for k in keys]
            for stage in ("valid", "test")]
    n = metrics["protocol"].get("longtail_max_train", "N")
    return (f"\nLong tail: users whose target item has at most {n} training interactions "
            "(only such targets count as relevant).\n\n"
            + markdown_table(["stage", "users"] + [k.removeprefix("longtail_") for k in keys], rows))


def write_comparison_table(rows: list[dict[str, Any]], path: Path, metrics: tuple[str, ...] | list[str] = HEADLINE,
                           title: str = "Model comparison", *, stage: str = "test") -> Path:
    """Mean ± std of `metrics` across models, as a Markdown table and a grouped bar chart
    (error bars = std) side by side: `path` names either one (a .png path gets the table
    beside it as .md; any other path gets the chart beside it as .png), and the table
    links the chart. Returns the Markdown path.

    `rows` are metrics.json dicts: aggregated ones (from `run_seeds`) give `stage` means
    and `{stage}_std` stds; a single run has no std and shows the mean alone. A row is
    labelled by its "label" key, else "model" (plus "dataset" when rows span datasets).
    A metric a row lacks (or holds as NaN) is shown as "—" and left out of the chart.

    >>> # write_comparison_table([json.load(open("runs/sasrec/metrics.json")), ...], Path("compare.md"))
    """
    path = Path(path)
    png, path = (path, path.with_suffix(".md")) if path.suffix.lower() == ".png" else (path.with_suffix(".png"), path)
    metrics = list(metrics)
    labels = _row_labels(rows)
    means = np.full((len(rows), len(metrics)), np.nan)
    stds = np.zeros((len(rows), len(metrics)))
    table = []
    for i, row in enumerate(rows):
        mean_d, std_d = row.get(stage, {}), row.get(f"{stage}_std", {})
        cells = [labels[i], str(len(row["seeds"])) if "seeds" in row else "1"]
        for j, m in enumerate(metrics):
            if m in mean_d and not np.isnan(mean_d[m]):  # NaN: no seed defined it (an empty slice)
                means[i, j], stds[i, j] = mean_d[m], std_d.get(m, 0.0)
                cells.append(fmt_mean_std(mean_d[m], std_d.get(m)))
            else:
                cells.append("—")
        table.append(cells)
    _bar_chart(labels, metrics, means, stds, png, f"{title} ({stage})")
    text = (f"# {title}\n\n{stage.capitalize()} metrics, mean ± sample std over seeds.\n\n"
            + markdown_table(["model", "seeds"] + metrics, table) + f"\n![{title}]({png.name})\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _row_labels(rows: list[dict[str, Any]]) -> list[str]:
    datasets = {r.get("dataset") for r in rows}
    out = []
    for r in rows:
        label = str(r.get("label", r.get("model", "?")))
        out.append(f"{label} ({r['dataset']})" if "label" not in r and len(datasets) > 1 else label)
    return out


def _bar_chart(labels: list[str], metrics: list[str], means: np.ndarray, stds: np.ndarray, path: Path,
               title: str) -> None:
    plt = _pyplot()
    n_rows = max(len(labels), 1)
    width = 0.8 / n_rows
    x = np.arange(len(metrics))
    fig, ax = plt.subplots(figsize=(max(6.4, 1.2 * len(metrics) * (1 + n_rows / 4)), 4.0), dpi=110)
    for i, label in enumerate(labels):
        ok = ~np.isnan(means[i])
        ax.bar(x[ok] + (i - (n_rows - 1) / 2) * width, means[i, ok], width, yerr=stds[i, ok], capsize=2, label=label)
    ax.set_xticks(x, metrics)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if labels:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
