"""Training speed side by side: several settings of one experiment trained over the same
seeds in one run, with the time to the best checkpoint and the accuracy reached
(benchmarks/train_speed.py prints it).

Seeds are interleaved (seed 1 of every setting, then seed 2, ...) and the order of the
settings rotates from seed to seed, so a machine that slows down or warms up during the
run does not favour one setting. A finished run directory is reused, so an interrupted
comparison resumes.

Importing this module does not import torch.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from genrecsys.config import ExperimentConfig
from genrecsys.eval.report import markdown_table
from genrecsys.eval.significance import paired_tests

FIELDS = ("best_epoch", "epochs", "seconds_to_best", "seconds_per_epoch")


def time_to_best(settings: dict[str, ExperimentConfig], seeds: int, output_dir: str | Path, *,
                 cache_dir: str | Path | None = None, metric: str = "ndcg@10") -> dict[str, Any]:
    """Train every setting over ``seeds`` seeds (each setting's ``train.seed``, +1, ...) into
    ``output_dir/<setting>/seed-N``; per setting, return the per-seed figures (best epoch,
    epochs, seconds to best, s/epoch, valid and test ``metric``) and their means and stds,
    and for every setting after the first, a paired test of its per-seed test ``metric``
    against the first setting's (the baseline)."""
    from genrecsys.experiment import load_split, run_experiment

    if not settings or seeds < 1:
        raise ValueError("time_to_best needs at least one setting and one seed")
    names = list(settings)
    out = Path(output_dir)
    rows: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    split = None
    for i in range(seeds):
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotate who goes first
            cfg = settings[name]
            seed = cfg.train.seed + i
            run_dir = out / name / f"seed-{seed}"
            if (run_dir / "metrics.json").is_file():
                m = json.loads((run_dir / "metrics.json").read_text())
            else:
                run_cfg = replace(cfg, train=replace(cfg.train, seed=seed))
                if split is None:
                    split = load_split(run_cfg, cache_dir)
                # resume: a run killed mid-way continues from its last epoch; its clocks count
                # the epochs it ran, not the time it lay dead, so its seconds stay comparable
                m = run_experiment(run_cfg, run_dir, cache_dir=cache_dir, split=split, resume=True)
            rows[name].append({"seed": seed, **{k: m[k] for k in FIELDS}, "valid": m["valid"][metric],
                               "test": m["test"][metric]})
    result: dict[str, Any] = {"metric": metric, "seeds": seeds, "settings": {}}
    base = np.array([r["test"] for r in rows[names[0]]])
    for name in names:
        rs = sorted(rows[name], key=lambda r: r["seed"])
        agg = {k: _mean_std([r[k] for r in rs]) for k in (*FIELDS, "valid", "test")}
        entry: dict[str, Any] = {"runs": rs, **agg}
        if name != names[0]:
            test = np.array([r["test"] for r in rs])
            entry["vs_baseline"] = {"test_delta": float(test.mean() - base.mean()),
                                    # None with one seed: no spread to compare with
                                    "within_one_baseline_std": bool(abs(test.mean() - base.mean()) <= _std(base))
                                    if seeds >= 2 else None,
                                    "seconds_to_best_ratio": float(agg["seconds_to_best"]["mean"]
                                                                   / result["settings"][names[0]]["seconds_to_best"]["mean"]),
                                    **({"tests": paired_tests(base, test)} if seeds >= 2 else {})}
        result["settings"][name] = entry
    return result


def _std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def _mean_std(values: list[float]) -> dict[str, float]:
    x = np.asarray(values, dtype=float)
    return {"mean": float(x.mean()), "std": _std(x)}


def time_to_best_table(result: dict[str, Any]) -> str:
    """Markdown: one row per setting — best epoch, epochs, s/epoch, seconds to best (mean ±
    std and the per-seed values), test metric mean ± std, and against the baseline (first
    row): the ratio of seconds to best, the test difference and its paired p-value."""
    metric = result["metric"].upper()
    rows = []
    for name, e in result["settings"].items():
        vs = e.get("vs_baseline")
        p = vs.get("tests", {}).get("t_pvalue") if vs else None
        rows.append([
            name, f"{e['best_epoch']['mean'] + 1:.1f}", f"{e['epochs']['mean']:.1f}", f"{e['seconds_per_epoch']['mean']:.2f}",
            f"{e['seconds_to_best']['mean']:.1f} ± {e['seconds_to_best']['std']:.1f}",
            " / ".join(f"{r['seconds_to_best']:.0f}" for r in e["runs"]),
            f"{e['test']['mean']:.4f} ± {e['test']['std']:.4f}",
            "baseline" if vs is None else f"{vs['seconds_to_best_ratio']:.2f}×",
            "" if vs is None else f"{vs['test_delta']:+.4f}" + ("" if p is None else f" (p {p:.2f})")
            + (" — outside one baseline std" if vs["within_one_baseline_std"] is False else ""),
        ])
    return markdown_table(["setting", "best epoch (1-based)", "epochs", "s/epoch", "s to best", "per seed",
                           f"test {metric}", "time to best vs baseline", f"test {metric} vs baseline"], rows)


def setting_from_spec(spec: str, base: ExperimentConfig) -> tuple[str, ExperimentConfig]:
    """``"name"`` or ``"name:train.lr=4e-3,model_params.encoder_impl=torch"`` -> (name, config):
    ``base`` with the given fields replaced (dotted paths into ExperimentConfig; values
    read as JSON where they parse, else as strings). Unknown fields are one-line errors."""
    from genrecsys.config import with_fields
    from genrecsys.errors import GenrecsysError

    name, _, rest = spec.partition(":")
    if not name:
        raise GenrecsysError(f"setting {spec!r}: expected NAME or NAME:key=value,...")
    fields: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise GenrecsysError(f"setting {spec!r}: {item!r} is not key=value")
        try:
            fields[key] = json.loads(raw)
        except json.JSONDecodeError:
            fields[key] = raw
    return name, with_fields(base, fields, where=f"setting {spec!r}")
