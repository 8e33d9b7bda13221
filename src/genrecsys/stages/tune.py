"""Hyper-parameter search on Ray Tune: every trial a normal run directory, selection on
validation only, the chosen configuration's test figures read once at the end.

A search space is a YAML mapping from dotted config fields to one sampler each::

    train.lr: {loguniform: [1.0e-4, 1.0e-2]}
    train.batch_size: {choice: [128, 256, 512]}
    model_params.dropout: {uniform: [0.1, 0.5]}
    model_params.n_layers: {randint: [1, 4]}     # 1, 2 or 3 (upper bound excluded)

Trials run as Ray Tune trials (local processes on one machine, or spread over a cluster
given ``address``), ``concurrent`` at a time, each reserving ``train.threads`` CPUs. A
trial trains with :func:`genrecsys.experiment.run_experiment` into ``runs/<trial id>``
(the id is a hash of its sampled values) with ``reuse`` and ``resume``: a tune run again
after a kill continues through Ray Tune's own restore, and a trial whose run directory is
finished is not trained again. Each trial reports only its validation score; test metrics
exist in every run directory (they are normal runs) but the summary shows them for the
selected configuration alone.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genrecsys.config import ExperimentConfig, from_dict, load_yaml, to_dict, with_fields
from genrecsys.errors import GenrecsysError

SAMPLERS = ("choice", "uniform", "loguniform", "randint")


def load_space(path: str | Path, base: ExperimentConfig) -> dict[str, tuple[str, list[Any]]]:
    """The search space in ``path``, checked: known samplers with the right arguments, and
    fields that exist in ``base`` (the first value of each is tried on it)."""
    raw = load_yaml(path)
    space: dict[str, tuple[str, list[Any]]] = {}
    for key, spec in raw.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SAMPLERS:
            raise GenrecsysError(f"{path}: {key}: expected one of {{{', '.join(SAMPLERS)}: [...]}}, got {spec!r}")
        kind, args = next(iter(spec.items()))
        if not isinstance(args, list) or not args or (kind != "choice" and len(args) != 2):
            raise GenrecsysError(f"{path}: {key}: {kind} takes {'a non-empty list' if kind == 'choice' else '[low, high]'}")
        if kind != "choice" and not args[0] < args[1]:
            raise GenrecsysError(f"{path}: {key}: {kind} needs low < high, got {args}")
        if kind == "loguniform" and args[0] <= 0:
            raise GenrecsysError(f"{path}: {key}: loguniform needs low > 0, got {args}")
        space[str(key)] = (kind, list(args))
    if not space:
        raise GenrecsysError(f"{path}: the search space is empty")
    # Unknown fields fail here, model hyper-parameters included, not in every trial.
    probe = with_fields(base, {k: args[0] for k, (_, args) in space.items()}, where=str(path))
    from genrecsys.registry import MODELS

    from_dict(MODELS.get(probe.model).Config, dict(probe.model_params), f"{path}: model_params ({probe.model})")
    return space


def trial_id(values: dict[str, Any]) -> str:
    return "trial-" + hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _trial(values: dict[str, Any], *, base: dict[str, Any], runs_dir: str, cache_dir: str | None) -> None:
    """One Ray Tune trial: a normal run; reports the validation score only."""
    from ray import tune

    from genrecsys.experiment import run_experiment

    values = {k: (v.item() if hasattr(v, "item") else v) for k, v in values.items()}  # numpy scalars from samplers
    cfg = with_fields(from_dict(ExperimentConfig, base), values, where="trial")
    run_dir = Path(runs_dir) / trial_id(values)
    metrics = run_experiment(cfg, run_dir, cache_dir=cache_dir, resume=True, reuse=True)
    tune.report({"valid": metrics["valid"][metrics["selection_metric"]], "run_dir": str(run_dir)})


def _ray_space(space: dict[str, tuple[str, list[Any]]]) -> dict[str, Any]:
    from ray import tune

    make = {"choice": lambda a: tune.choice(a), "uniform": lambda a: tune.uniform(*a),
            "loguniform": lambda a: tune.loguniform(*a), "randint": lambda a: tune.randint(*a)}
    return {k: make[kind](args) for k, (kind, args) in space.items()}


def run_tune(base: ExperimentConfig, space: dict[str, tuple[str, list[Any]]], output_dir: str | Path, *,
             trials: int, concurrent: int = 1, seed: int = 0, cache_dir: str | Path | None = None,
             address: str | None = None) -> dict[str, Any]:
    """Search ``space`` around ``base`` with ``trials`` random samples (seeded); returns the
    summary also written to ``output_dir/tune.json``, with the chosen configuration in
    ``output_dir/best.yaml`` and its run directory's test metrics."""
    import yaml
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from genrecsys.llm.distributed import ensure_ray

    if trials < 1 or concurrent < 1:
        raise GenrecsysError(f"tune: trials and concurrent must be >= 1, got {trials} and {concurrent}")
    out = Path(output_dir).resolve()
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    ensure_ray(address)
    trainable = tune.with_parameters(_trial, base=asdict(base), runs_dir=str(runs),
                                     cache_dir=str(cache_dir) if cache_dir else None)
    trainable = tune.with_resources(trainable, {"cpu": base.train.threads or 1})
    storage = out / "ray"
    if tune.Tuner.can_restore(storage / "tune"):  # a killed tune: Ray Tune continues its own record
        tuner = tune.Tuner.restore(str(storage / "tune"), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space=_ray_space(space),
            # the generator itself caps trials in flight: Ray Tune ignores TuneConfig's
            # max_concurrent_trials for a BasicVariantGenerator passed in (it warns and runs as many
            # trials as there are CPUs)
            tune_config=tune.TuneConfig(num_samples=trials, metric="valid", mode="max",
                                        search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=concurrent)),
            run_config=tune.RunConfig(name="tune", storage_path=str(storage), verbose=0))
    grid = tuner.fit()
    rows = []
    for r in grid:
        if r.error is not None or not r.metrics or "valid" not in r.metrics:
            rows.append({"values": r.config, "valid": None, "error": str(r.error)[:300]})
            continue
        rows.append({"values": {k: r.config[k] for k in space}, "valid": r.metrics["valid"], "run_dir": r.metrics["run_dir"]})
    ok = [r for r in rows if r["valid"] is not None]
    if not ok:
        raise GenrecsysError(f"tune: no trial finished; first error: {rows[0].get('error') if rows else 'none ran'}")
    ok.sort(key=lambda r: -r["valid"])
    best = ok[0]
    best_cfg = with_fields(base, best["values"], where="best trial")
    (out / "best.yaml").write_text(yaml.safe_dump(to_dict(best_cfg), sort_keys=False))
    best_metrics = json.loads((Path(best["run_dir"]) / "metrics.json").read_text())
    summary = {"model": base.model, "trials": len(rows), "finished": len(ok), "space": {k: {kind: args} for k, (kind, args)
                                                                                       in space.items()},
               "selection_metric": best_metrics["selection_metric"], "best": best, "best_config": str(out / "best.yaml"),
               "best_test": best_metrics["test"], "ranking": ok, "failed": [r for r in rows if r["valid"] is None]}
    (out / "tune.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def tune_report(summary: dict[str, Any]) -> str:
    """Trials by validation score, then the chosen configuration's test figures (once)."""
    metric = summary["selection_metric"]
    keys = list(summary["space"])
    lines = [f"{summary['finished']} of {summary['trials']} trials finished; selected on validation {metric}.", "",
             "| rank | " + " | ".join(keys) + f" | valid {metric} | run |", "|---|" + "---|" * (len(keys) + 2)]
    for i, r in enumerate(summary["ranking"], 1):
        vals = " | ".join(f"{r['values'][k]:.4g}" if isinstance(r["values"][k], float) else str(r["values"][k]) for k in keys)
        lines.append(f"| {i} | {vals} | {r['valid']:.4f} | {Path(r['run_dir']).name} |")
    test = summary["best_test"]
    lines += ["", f"Selected: {Path(summary['best']['run_dir']).name} -> {summary['best_config']}",
              "Its test figures (read once, after selection): " + ", ".join(f"{k} {v:.4f}" for k, v in test.items())]
    return "\n".join(lines)
