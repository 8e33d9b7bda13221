"""GENRE (Liu et al.) on ML-100K, the paper's tables: the augmented variants built
through ``augment()``, the eight news / CTR models trained on each over seeds, and Tables
1, 6, 8, 10 and Fig. 7 with their tests and plots. ``benchmarks/genre.py`` is the command
line over this module; the main job's smaller GENRE stage is ``genrecsys.stages.genre``,
whose ORI builder, UP∅ control and model parameters this module shares.

Setting. Chronological leave-one-out, constructed impressions (the clicked item + 24
never-seen items, seed 0), 20% of the users cut to their 1-3 most recent training items
(simulated new users); every variant is compared with ORI per test impression (paired, each
user's value averaged over seeds) and per seed (Welch t).

>>> cfg = GenreTables(command="table10", variants_dir="runs/genre/variants", models=["nrms"], seeds=5)
>>> # out = run_command(cfg)   # trains what is missing, returns {"markdown": ..., "results": ...}
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genrecsys.errors import GenrecsysError
from genrecsys.stages.genre import CONTROLS as STAGE_CONTROLS
from genrecsys.stages.genre import FUSION_FORMS, MODEL_PARAMS, augment_config, build_fusion_control, build_original
from genrecsys.stages.genre import model_params

MODELS = ["naml", "lstur", "nrms", "plmnr", "bst", "dcn", "pnn", "din"]
MATCHING = ("naml", "lstur", "nrms", "plmnr")
RANKING = ("bst", "dcn", "pnn", "din")
METRICS = ("auc", "mrr", "ndcg@5", "ndcg@10")
# variant -> (directory, augment task, items per new user for generating tasks)
VARIANTS: dict[str, tuple[str, str | None, int]] = {
    "ORI": ("ori", None, 0), "NS": ("ns", "summarize", 0), "UP": ("up", "profile", 0), "NG": ("ng", "generate", 2),
    "UP→NG": ("up-ng", "chain", 2), "ALL": ("all", "all", 2), "NG-1": ("ng-1", "generate", 1),
    "NG-4": ("ng-4", "generate", 4), **{c: (sub, None, 0) for c, (sub, _) in STAGE_CONTROLS.items()}}
TABLE10 = ("ORI", "NS", "UP", "NG", "UP→NG", "ALL")
WARM_NEEDS_GATED = "--warm-start needs --fusion-form gated: only the gated fusion starts as the ORI model"
CONTROLS = tuple(STAGE_CONTROLS)  # built from ORI without an LLM, on first use
FIG7 = {0: "ORI", 1: "NG-1", 2: "NG", 4: "NG-4"}
ALPHA = 0.05
QUICK = {"limit": 20, "models": ["nrms"], "seeds": 1, "max_epochs": 1}
FULL = {"models": MODELS, "seeds": 5, "max_epochs": 20, "limit": None}
# what must be equal for rows of two runs of one table command to stand in one table
PROTOCOL = ("seeds", "max_epochs", "patience", "lr")
__all__ = ["GenreTables", "run_command", "COMMANDS", "MODELS", "TABLE10", "CONTROLS", "VARIANTS", "FUSION_FORMS",
           "MODEL_PARAMS"]


@dataclass
class GenreTables:
    """One command of the GENRE tables and where it reads and writes. ``None`` in
    ``models`` / ``seeds`` / ``max_epochs`` means the full protocol's value (``FULL``), or
    ``QUICK``'s with ``quick=True`` (see ``resolved``)."""

    command: str = "table10"  # variants | train | table10 | table6 | fig7 | table8 | table1
    variants_dir: str = "runs/genre/variants"
    runs_dir: str = "runs/genre/runs"
    results_dir: str = "benchmarks/results/genre"
    cache_dir: str | None = None
    models: list[str] | None = None
    variants: list[str] = field(default_factory=lambda: [*TABLE10, *CONTROLS])  # table10 / train
    earlier: str | None = None  # a <command>.json written before under the same protocol
    seeds: int | None = None
    max_epochs: int | None = None
    patience: int = 3  # validations without AUC gain before stopping
    fusion_form: str = "mlp"  # UP's interest fusion: mlp (the paper's eq. (2)) or gated
    warm_start: bool = False  # gated fusion: start from the same seed's trained ORI run (train.init_from)
    lr: float | None = None
    threads: int = 1  # torch threads per training process
    jobs: int = 1  # training runs at a time, one process each
    device: str = "cpu"
    limit: int | None = None  # LLM rows per task; None: all
    max_tokens: int | None = None  # LLM answer cap for every task
    backend: str = "local"
    base_url: str | None = None
    model: str | None = None  # LLM: a model name (openai) or path; default the embedded SmolLM2
    price_as: str | None = None  # table8: price the tokens at this model's list price
    quick: bool = False

    def resolved(self) -> GenreTables:
        """A copy with the unset protocol fields filled from ``QUICK`` or ``FULL``."""
        out = GenreTables(**asdict(self))
        for k, v in (QUICK if self.quick else FULL).items():
            if getattr(out, k) is None:
                setattr(out, k, list(v) if isinstance(v, list) else v)
        return out


# ----------------------------------------------------------------------------- variants
def make_llm(cfg: GenreTables):
    from genrecsys.config import LLMConfig
    from genrecsys.llm.client import LLM

    llm_cfg = LLMConfig(backend=cfg.backend, model=cfg.model, threads=cfg.threads,
                        **({"base_url": cfg.base_url} if cfg.base_url else {}))
    return LLM(llm_cfg, cfg.cache_dir)


def cmd_variants(cfg: GenreTables) -> dict[str, Any]:
    from genrecsys.augment import augment, load_variant

    root = Path(cfg.variants_dir)
    ori = root / VARIANTS["ORI"][0]
    build_original(ori, cfg.cache_dir)  # the main job's builder: reused when already built
    new_users = json.loads((ori / "cold_start.json").read_text())["new_users"]
    out: dict[str, Any] = {"ORI": {"path": str(ori), "new_users": len(new_users)}}
    llm = make_llm(cfg)
    try:
        for name, (sub, task, n_items) in VARIANTS.items():
            if task is None:
                continue
            t0 = time.perf_counter()
            path = augment(task, str(ori), root / sub, llm, augment_config(n_items, cfg.limit, cfg.quick, max_tokens=cfg.max_tokens), cache_dir=cfg.cache_dir,
                           name=f"ml-100k-cold+{name}")
            m = load_variant(path).manifest
            out[name] = {"path": str(path), "wall_s": round(time.perf_counter() - t0, 1),
                         **{k: m[k] for k in ("rows", "parse_failures", "requests", "cache_hits", "backend_calls",
                                              "prompt_tokens", "completion_tokens", "cost", "cost_total")},
                         "quality": m["quality"]}
            print(f"{name}: {out[name]['rows']} rows, {out[name]['parse_failures']} parse failures, "
                  f"{out[name]['backend_calls']} backend calls, {out[name]['wall_s']} s", file=sys.stderr, flush=True)
    finally:
        llm.close()
    rows = [[n, v.get("rows", "—"), v.get("parse_failures", "—"), v.get("cache_hits", "—"), v.get("backend_calls", "—"),
             v.get("prompt_tokens", "—"), v.get("completion_tokens", "—"), f"{v.get('cost_total', 0.0):.4f}"]
            for n, v in out.items()]
    md = _md(["variant", "LLM rows", "parse failures", "cache hits", "backend calls", "prompt tokens",
              "completion tokens", "cost (USD)"], rows)
    _bar(list(out), {"completion tokens": [out[n].get("completion_tokens", 0) for n in out]},
         Path(cfg.results_dir) / "variants.png", "completion tokens")
    return {"markdown": md, "variants": out}


# ----------------------------------------------------------------------------- training
def variant_dir(cfg: GenreTables, name: str) -> Path:
    d = Path(cfg.variants_dir) / VARIANTS[name][0]
    if name in CONTROLS:
        build_fusion_control(variant_dir(cfg, "ORI"), d)  # reused when present
    if not d.is_dir():
        raise GenrecsysError(f"{d}: no such variant; run `genre.py variants` first")
    return d


def experiment_config(cfg: GenreTables, name: str, model: str, seed: int = 2020):
    """The ExperimentConfig of `model` on variant `name` under `seed`."""
    from genrecsys.config import DataConfig, EvalConfig, ExperimentConfig, ImpressionConfig, TrainConfig

    params = model_params(name, getattr(cfg, "fusion_form", "mlp"))
    init_from = None
    if getattr(cfg, "warm_start", False) and params.get("interest_fusion"):
        if params.get("interest_fusion_form") != "gated":
            raise GenrecsysError(WARM_NEEDS_GATED)
        # the gate is zero, so the model starts as exactly this trained ORI model (validated first)
        init_from = str(seed_dir(cfg, "ORI", model, seed))
    return ExperimentConfig(model=model, model_params=params,
                            data=DataConfig(dataset=str(variant_dir(cfg, name))),
                            train=TrainConfig(threads=cfg.threads, device=cfg.device, progress=False,
                                              patience=cfg.patience, seed=seed, init_from=init_from,
                                              epochs=cfg.max_epochs, **({"lr": cfg.lr} if cfg.lr else {})),
                            eval=EvalConfig(protocol="impressions", impressions=ImpressionConfig(negatives=24)))


def seed_dir(cfg: GenreTables, name: str, model: str, seed: int) -> Path:
    return run_dir(cfg, name, model) / f"seed-{seed}"


def missing_runs(cfg: GenreTables, pairs: list[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """(variant, model, seed) of every run of `pairs` (variant, model) with no metrics.json yet."""
    return [(name, model, 2020 + i) for name, model in pairs for i in range(cfg.seeds)
            if not (seed_dir(cfg, name, model, 2020 + i) / "metrics.json").is_file()]


def _report(name: str, model: str, seed: int, metrics: dict[str, Any]) -> None:
    print(f"{name} {model} seed {seed}: test auc {metrics['test']['auc']:.4f}, {metrics['epochs']} epochs",
          file=sys.stderr, flush=True)


def train_missing(cfg: GenreTables, pairs: list[tuple[str, str]]) -> None:
    """Train the runs of `pairs` not on disk yet, --jobs at a time, each in its own process
    with --threads threads (runs are independent: one per seed directory, written
    atomically). With --jobs 1 `train()` trains them in this process instead."""
    tasks = missing_runs(cfg, pairs)
    if getattr(cfg, "jobs", 1) <= 1 or not tasks:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from genrecsys.experiment import run_experiment
    from genrecsys.files import Busy

    print(f"training {len(tasks)} runs, {cfg.jobs} at a time", file=sys.stderr, flush=True)
    # spawn: a forked child would inherit this process's torch thread pools
    with ProcessPoolExecutor(cfg.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {}
        for name, model, seed in tasks:
            futures[pool.submit(run_experiment, experiment_config(cfg, name, model, seed),
                                seed_dir(cfg, name, model, seed), cache_dir=cfg.cache_dir,
                                reuse=True)] = (name, model, seed)
        try:
            for f in as_completed(futures):
                try:
                    _report(*futures[f], f.result())
                except Busy as e:  # another process trains it; `train()` waits for it
                    _left(seed_dir(cfg, *futures[f]), e)
        except BaseException:  # a failed run (or Ctrl-C): let the running ones finish, start no more
            pool.shutdown(wait=True, cancel_futures=True)
            raise


_TOLD: set[Path] = set()


def _left(out: Path, e: Exception) -> None:
    """Say once per process that the run in `out` is left to the process training it (the
    passes of `train`/`table10 --jobs` and the polling all meet the same busy run)."""
    if out not in _TOLD:
        _TOLD.add(out)
        print(f"left to the other process: {e}", file=sys.stderr, flush=True)


def train_runs(cfg: GenreTables, tasks: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Train the runs (variant, model, seed) of `tasks` not on disk yet, in this process;
    returns those that another process is training (processes may share --runs-dir: two
    commands on two cores, or machines on one file system)."""
    from genrecsys.experiment import load_split, run_experiment
    from genrecsys.files import Busy

    splits: dict[str, Any] = {}
    busy = []
    for name, model, seed in tasks:
        out = seed_dir(cfg, name, model, seed)
        if (out / "metrics.json").is_file():
            continue
        exp = experiment_config(cfg, name, model, seed)
        if name not in splits:
            splits[name] = load_split(exp, cfg.cache_dir)
        try:
            _report(name, model, seed, run_experiment(exp, out, split=splits[name], cache_dir=cfg.cache_dir,
                                                      reuse=True))
        except Busy as e:
            _left(out, e)
            busy.append((name, model, seed))
    return busy


def train(cfg: GenreTables, name: str, model: str, wait_s: float = 30.0) -> dict[str, Any]:
    """One model on one variant over --seeds seeds (runs already on disk are reused). A seed
    that another process is training is left to it, the others are trained meanwhile, and its
    result is then awaited (polled every `wait_s` seconds)."""
    from genrecsys.eval.report import aggregate_seeds

    seeds = [2020 + i for i in range(cfg.seeds)]
    pending = train_runs(cfg, [(name, model, s) for s in seeds])
    if pending:
        print(f"waiting for {len(pending)} {name} {model} runs that other processes train", file=sys.stderr,
              flush=True)
    while pending:
        time.sleep(wait_s)
        pending = train_runs(cfg, pending)  # finished ones are skipped; a dead holder's are trained
    agg = aggregate_seeds([json.loads((seed_dir(cfg, name, model, s) / "metrics.json").read_text()) for s in seeds])
    agg.pop("runs")
    return agg


def warm_base(cfg: GenreTables) -> None:
    """With --warm-start the fusion runs start from ORI's runs: train (or await) those first,
    so no warm start reads a run that is still training."""
    if getattr(cfg, "warm_start", False):
        train_missing(cfg, [("ORI", m) for m in cfg.models])
        for m in cfg.models:
            train(cfg, "ORI", m)


def cmd_train(cfg: GenreTables) -> dict[str, Any]:
    """Train the missing runs of exactly --variants x --models (ORI only if listed), no table:
    for splitting the runs of `table10` over processes or machines that share --runs-dir. Runs
    that another process is training are skipped first and awaited only at the end, so the
    same command started in several places divides the work."""
    pairs = [(v, m) for v in cfg.variants for m in cfg.models]
    warm_base(cfg)
    train_missing(cfg, pairs)
    train_runs(cfg, missing_runs(cfg, pairs))
    rows = []
    for v, m in pairs:
        r = train(cfg, v, m)
        rows.append([v, m, len(r["seeds"]), _cell(r["test"]["auc"], r["test_std"]["auc"], len(r["seeds"]))])
    return {"markdown": _md(["variant", "model", "seeds", "test AUC"], rows), "pairs": pairs}


def run_dir(cfg: GenreTables, name: str, model: str) -> Path:
    """A gated-fusion run of UP / UP∅ lives beside the paper-form run, never in its place."""
    sub = VARIANTS[name][0]
    if getattr(cfg, "fusion_form", "mlp") != "mlp" and model_params(name).get("interest_fusion"):
        sub = f"{sub}-{cfg.fusion_form}" + ("-warm" if getattr(cfg, "warm_start", False) else "")
    return Path(cfg.runs_dir) / sub / model


def paired(cfg: GenreTables, base: str, other: str, model: str, users: set[str] | None = None
           ) -> dict[str, dict[str, float]]:
    """Paired tests of `other` − `base` over the test impressions (per user, seeds averaged)."""
    import numpy as np

    from genrecsys.eval.compare import load_per_user
    from genrecsys.eval.significance import paired_tests

    a, _ = load_per_user(run_dir(cfg, base, model), "test", METRICS)
    b, _ = load_per_user(run_dir(cfg, other, model), "test", METRICS)
    common = a.index.intersection(b.index)
    if users is not None:
        common = common[common.isin(list(users))]
    out = {}
    for m in METRICS:
        if len(common) < 2:
            out[m] = {"n": len(common), "mean_diff": float("nan"), "t_pvalue": float("nan"),
                      "wilcoxon_pvalue": float("nan")}
            continue
        t = paired_tests(a.loc[common, m].to_numpy(np.float64), b.loc[common, m].to_numpy(np.float64))
        out[m] = {k: t[k] for k in ("n", "mean_diff", "ci_low", "ci_high", "t_pvalue", "wilcoxon_pvalue")}
    return out


def seed_test(base: list[float], other: list[float]) -> dict[str, float]:
    """Welch t-test of one metric's per-seed values, `other` − `base`.

    The per-impression test above holds each model fixed (seeds averaged), so it cannot see
    training randomness; this one can, with 5 seeds it is the stricter of the two.

    >>> r = seed_test([0.80, 0.81, 0.79], [0.80, 0.81, 0.79])
    >>> r["mean_diff"], r["t_pvalue"]
    (0.0, 1.0)
    """
    import numpy as np
    from scipy import stats

    a, b = np.asarray(base, np.float64), np.asarray(other, np.float64)
    diff = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return {"n_base": len(a), "n_other": len(b), "mean_diff": diff, "t_pvalue": float("nan")}
    if a.std() == 0 and b.std() == 0:
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(stats.ttest_ind(b, a, equal_var=False).pvalue)
    return {"n_base": len(a), "n_other": len(b), "mean_diff": diff, "t_pvalue": p}


def seed_pair(cfg: GenreTables, base: str, other: str, model: str, users: set[str] | None = None,
              metric: str = "auc") -> dict[str, float]:
    """`seed_test` of two variants' per-seed test means over the users both evaluate (and
    `users`, when given), so that UP→NG, which drops users, is compared on the same ones."""
    import pandas as pd

    def per_seed(name: str) -> list[pd.Series]:
        out = []
        for i in range(cfg.seeds):
            df = pd.read_parquet(run_dir(cfg, name, model) / f"seed-{2020 + i}" / "per_user.parquet")
            df = df[df["stage"] == "test"]
            out.append(df.set_index(df["user"].astype(str))[metric])
        return out

    a, b = per_seed(base), per_seed(other)
    keep = sorted(a[0].index.intersection(b[0].index).intersection(list(users) if users is not None else a[0].index))
    return seed_test([float(x.loc[keep].mean()) for x in a], [float(x.loc[keep].mean()) for x in b])


def significance_mark(test: dict[str, float]) -> str:
    """'+0.0123 (p=0.004)' when significant at ALPHA, else '+0.0123 n.s. (p=0.31)'.

    >>> significance_mark({"mean_diff": 0.01, "t_pvalue": 0.3})
    '+0.0100 n.s. (p=0.30)'
    """
    p = test["t_pvalue"]
    if p != p:
        return f"{test['mean_diff']:+.4f} (no test)"
    return f"{test['mean_diff']:+.4f} " + (f"(p={p:.3g})" if p < ALPHA else f"n.s. (p={p:.2f})")


def _cell(mean: float, std: float, seeds: int = 2) -> str:
    """mean ± std over seeds (a single seed has no spread to show)."""
    return f"{mean:.4f}" if seeds < 2 else f"{mean:.4f} ± {std:.4f}"


NOTE = ("\nvs ORI: mean difference over the test impressions (one per user, each user's value averaged over the "
        "seeds), paired t-test; n.s. = p >= {alpha} (not significant). Wilcoxon p-values and 95% CIs are "
        "in the JSON.\n")


SEED_NOTE = ("Welch t over seeds: each seed's mean test AUC of the variant against ORI's, over the users both "
             "evaluate; it counts training randomness, which the per-impression test (each model fixed, seeds "
             "averaged) does not.\n")


def load_earlier(cfg: GenreTables, command: str) -> tuple[dict[str, Any], list[str]]:
    """`--earlier`: a <command>.json this script wrote before, and the models of it to copy
    (those not in --models). Refused when it was measured under another protocol."""
    if not cfg.earlier:
        return {}, []
    path = Path(cfg.earlier)
    if not path.is_file():
        raise GenrecsysError(f"--earlier {path}: no such file")
    earlier = json.loads(path.read_text())
    if earlier.get("env", {}).get("args", {}).get("command") != command:
        raise GenrecsysError(f"--earlier {path}: not a {command} result")
    old = earlier["env"]["args"]
    differ = [f"{k} {old.get(k)} != {getattr(cfg, k)}" for k in PROTOCOL if old.get(k) != getattr(cfg, k)]
    if differ:
        raise GenrecsysError(f"--earlier {path}: measured under another protocol ({'; '.join(differ)})")
    # the table's own "models" also lists rows it copied from an earlier table in turn
    return earlier, [m for m in earlier.get("models", old.get("models", [])) if m not in cfg.models]


def merge_earlier(ours: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]], models: list[str],
                  keys: list[str], what: str) -> None:
    """Copy `models`' entries of `theirs` (outer key -> model -> value) into `ours`, for every outer key in `keys`.

    >>> ours = {"NS": {"din": 1}}
    >>> merge_earlier(ours, {"NS": {"dcn": 2, "din": 9}}, ["dcn"], ["NS"], "results"); ours
    {'NS': {'din': 1, 'dcn': 2}}
    """
    for k in keys:
        for m in models:
            if m not in theirs.get(k, {}):
                raise GenrecsysError(f"--earlier: no {what} for {m} on {k}")
            ours.setdefault(k, {})[m] = theirs[k][m]


def _earlier_note(cfg: GenreTables, models: list[str]) -> str:
    if not models:
        return ""
    return (f"Rows of {', '.join(models)}: from {cfg.earlier} (this command under the same protocol; "
            f"their runs are not on disk here).\n")


def cmd_table10(cfg: GenreTables) -> dict[str, Any]:
    names = ["ORI", *[v for v in cfg.variants if v != "ORI"]]  # ORI is every comparison's base
    earlier, copied = load_earlier(cfg, "table10")
    warm_base(cfg)
    train_missing(cfg, [(v, m) for v in names for m in cfg.models])
    results = {v: {m: train(cfg, v, m) for m in cfg.models} for v in names}
    tests = {v: {m: paired(cfg, "ORI", v, m) for m in cfg.models} for v in names if v != "ORI"}
    seed_tests = {v: {m: seed_pair(cfg, "ORI", v, m) for m in cfg.models} for v in names if v != "ORI"}
    merge_earlier(results, earlier.get("results", {}), copied, names, "results")
    merge_earlier(tests, earlier.get("tests", {}), copied, names[1:], "tests")
    merge_earlier(seed_tests, earlier.get("seed_tests", {}), copied, names[1:], "seed tests")
    models = [*copied, *cfg.models]
    rows = []
    for m in models:
        for v in names:
            r = results[v][m]
            cells = [_cell(r["test"][k], r["test_std"][k], len(r["seeds"])) for k in METRICS]
            vs = "—" if v == "ORI" else "; ".join(f"{k} {significance_mark(tests[v][m][k])}"
                                                  for k in ("auc", "ndcg@10"))
            by_seed = "—" if v == "ORI" else significance_mark(seed_tests[v][m])
            rows.append([m if v == "ORI" else "", v, *cells, vs, by_seed])
    md = _md(["model", "variant", "AUC", "MRR", "nDCG@5", "nDCG@10", "vs ORI (paired t, per impression)",
              "AUC vs ORI (Welch t over seeds)"], rows)
    md += NOTE.format(alpha=ALPHA) + SEED_NOTE + f"Seeds: {cfg.seeds}; at most {cfg.max_epochs} epochs.\n"
    md += _earlier_note(cfg, copied)
    profile_tests = {}
    if {"UP", "UP∅"} <= set(names):  # same model, with and without the profiles
        profile_tests = {m: {"impression": paired(cfg, "UP∅", "UP", m), "seeds": seed_pair(cfg, "UP∅", "UP", m)}
                         for m in cfg.models}
        merge_earlier({"p": profile_tests}, {"p": earlier.get("profile_tests", {})}, copied, ["p"], "UP − UP∅ tests")
        profile_tests = {m: profile_tests[m] for m in models}
        md += ("\nUP − UP∅ (interest fusion with the LLM's profiles − with none; what the profiles add): "
               + "; ".join(f"{m} AUC {significance_mark(t['impression']['auc'])} per impression, "
                           f"{significance_mark(t['seeds'])} over seeds" for m, t in profile_tests.items()) + ".\n")
    _delta_plot(models, {v: [tests[v][m]["auc"] for m in models] for v in names if v != "ORI"},
                Path(cfg.results_dir) / "table10.png")
    return {"markdown": md, "models": models, "results": results, "tests": tests, "seed_tests": seed_tests,
            "profile_tests": profile_tests, **({"earlier": {"path": cfg.earlier, "models": copied}} if copied else {})}


def cmd_table6(cfg: GenreTables) -> dict[str, Any]:
    earlier, copied = load_earlier(cfg, "table6")
    new_users = set(json.loads((variant_dir(cfg, "ORI") / "cold_start.json").read_text())["new_users"])
    train_missing(cfg, [(v, m) for v in ("ORI", "NG") for m in cfg.models])
    results = {v: {m: train(cfg, v, m) for m in cfg.models} for v in ("ORI", "NG")}
    groups = {m: {"new": new_users, "warm": _warm_users(cfg, m, new_users)} for m in cfg.models}
    tests = {m: {g: paired(cfg, "ORI", "NG", m, users) for g, users in groups[m].items()} for m in cfg.models}
    for m in cfg.models:
        for g in groups[m]:
            tests[m][g]["auc_seeds"] = seed_pair(cfg, "ORI", "NG", m, groups[m][g])
    merge_earlier(results, earlier.get("results", {}), copied, ["ORI", "NG"], "results")
    merge_earlier({"t": tests}, {"t": earlier.get("tests", {})}, copied, ["t"], "tests")
    models = [*copied, *cfg.models]
    tests = {m: tests[m] for m in models}
    rows = []
    for m in models:
        for g, prefix in (("new", "new_"), ("warm", "warm_")):
            o, n = results["ORI"][m]["test"], results["NG"][m]["test"]
            by_seed = tests[m][g]["auc_seeds"]
            rows.append([m, f"{g} ({int(o[prefix + 'impressions'])})",
                         *[f"{o[prefix + k]:.4f} → {n[prefix + k]:.4f}, {significance_mark(tests[m][g][k])}"
                           for k in METRICS], significance_mark(by_seed)])
    md = _md(["model", "users (impressions)", "AUC ORI → NG, Imp.", "MRR", "nDCG@5", "nDCG@10",
              "AUC Imp. (Welch t over seeds)"], rows)
    md += (NOTE.format(alpha=ALPHA).replace("vs ORI", "Imp.") + SEED_NOTE.replace("both evaluate", "of the group")
           + "New users: the simulated cold-start users.\n" + _earlier_note(cfg, copied))
    _bar([f"{m}/{g}" for m in models for g in ("new", "warm")],
         {v: [results[v][m]["test"][f"{g}_auc"] for m in models for g in ("new", "warm")] for v in ("ORI", "NG")},
         Path(cfg.results_dir) / "table6.png", "test AUC")
    return {"markdown": md, "models": models, "results": results, "tests": tests,
            **({"earlier": {"path": cfg.earlier, "models": copied}} if copied else {})}


def _warm_users(cfg: GenreTables, model: str, new_users: set[str]) -> set[str]:
    """Everyone ORI evaluates but the new users."""
    from genrecsys.eval.compare import load_per_user

    users, _ = load_per_user(run_dir(cfg, "ORI", model), "test", METRICS)
    return {u for u in users.index if u not in new_users}


def cmd_fig7(cfg: GenreTables) -> dict[str, Any]:
    new_users = set(json.loads((variant_dir(cfg, "ORI") / "cold_start.json").read_text())["new_users"])
    train_missing(cfg, [(v, m) for v in FIG7.values() for m in cfg.models])
    results = {k: {m: train(cfg, v, m) for m in cfg.models} for k, v in FIG7.items()}
    tests = {k: {m: paired(cfg, "ORI", v, m) for m in cfg.models} for k, v in FIG7.items() if k}
    tests_new = {k: {m: paired(cfg, "ORI", v, m, new_users) for m in cfg.models} for k, v in FIG7.items() if k}
    seed_tests = {k: {m: {"all": seed_pair(cfg, "ORI", v, m), "new": seed_pair(cfg, "ORI", v, m, new_users)}
                      for m in cfg.models} for k, v in FIG7.items() if k}
    rows = [[m, k, _cell(results[k][m]["test"]["auc"], results[k][m]["test_std"]["auc"], cfg.seeds),
             f"{results[k][m]['test']['new_auc']:.4f}",
             *(["—"] * 4 if not k else [significance_mark(tests[k][m]["auc"]),
                                        significance_mark(seed_tests[k][m]["all"]),
                                        significance_mark(tests_new[k][m]["auc"]),
                                        significance_mark(seed_tests[k][m]["new"])])]
            for m in cfg.models for k in FIG7]
    md = _md(["model", "generated items / new user", "AUC (all)", "AUC (new users)", "vs 0, all (per impression)",
              "vs 0, all (over seeds)", "vs 0, new (per impression)", "vs 0, new (over seeds)"], rows)
    md += NOTE.format(alpha=ALPHA).replace("vs ORI", "vs 0") + SEED_NOTE.replace("against ORI's", "against 0's")
    from genrecsys.eval.report import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 4.0), dpi=110)
    for m in cfg.models:
        line = ax.plot(list(FIG7), [results[k][m]["test"]["auc"] for k in FIG7], marker="o", label=f"{m}, all users")
        ax.plot(list(FIG7), [results[k][m]["test"]["new_auc"] for k in FIG7], marker="s", ls="--",
                color=line[0].get_color(), label=f"{m}, new users")
    ax.set_xlabel("generated items per new user")
    ax.set_ylabel("test AUC")
    ax.set_xticks(list(FIG7))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the axes: the lines fill them
    fig.tight_layout()
    fig.savefig(Path(cfg.results_dir) / "fig7.png")
    plt.close(fig)
    return {"markdown": md, "results": {str(k): v for k, v in results.items()},
            "tests": {str(k): v for k, v in tests.items()},
            "tests_new_users": {str(k): v for k, v in tests_new.items()},
            "seed_tests": {str(k): v for k, v in seed_tests.items()}}


# ----------------------------------------------------------------------------- cost (Table 8)
def cost_rows(manifests: dict[str, dict[str, Any]], auc: dict[str, dict[str, float]], price: tuple[float, float] | None,
              matching: tuple[str, ...] = MATCHING, ranking: tuple[str, ...] = RANKING) -> list[dict[str, Any]]:
    """Table 8 from the variants' manifests and the test AUCs (variant -> model -> AUC).

    cost: the manifest's ``cost_total`` (what all its answers cost at the LLM's own price),
    or, with ``price`` = (prompt, completion) USD per 1M tokens, its tokens at that price.
    Imp.: the mean over the models of a family of (AUC − ORI's AUC), in AUC points (x100),
    as GENRE reports it; CCR (%) = 100 x Imp. / cost (GENRE: NS 1.82 / 60 USD = 3.03 %).
    A family with no model trained, or a zero cost, gives None.

    >>> m = {"NG": {"prompt_tokens": 1_000_000, "completion_tokens": 500_000, "cost_total": 0.0}}
    >>> a = {"ORI": {"nrms": 0.60}, "NG": {"nrms": 0.62}}
    >>> r = cost_rows(m, a, (1.0, 2.0), matching=("nrms",), ranking=())[0]
    >>> r["cost"], round(r["imp_matching"], 6), round(r["ccr_matching"], 6), r["imp_ranking"]
    (2.0, 2.0, 100.0, None)
    """
    rows = []
    for name, m in manifests.items():
        pt, ct = int(m["prompt_tokens"]), int(m["completion_tokens"])
        cost = (pt * price[0] + ct * price[1]) / 1e6 if price is not None else float(m["cost_total"])
        row: dict[str, Any] = {"variant": name, "prompt_tokens": pt, "completion_tokens": ct, "rows": m.get("rows"),
                               "cost": cost}
        for family, models in (("matching", matching), ("ranking", ranking)):
            diffs = [100.0 * (auc[name][x] - auc["ORI"][x]) for x in models
                     if x in auc.get(name, {}) and x in auc["ORI"]]
            imp = sum(diffs) / len(diffs) if diffs else None
            row[f"imp_{family}"] = imp
            row[f"ccr_{family}"] = 100.0 * imp / cost if imp is not None and cost > 0 else None
        rows.append(row)
    return rows


def cmd_table8(cfg: GenreTables) -> dict[str, Any]:
    from genrecsys.augment import load_variant
    from genrecsys.llm.accounting import DEFAULT_PRICES

    t10 = Path(cfg.results_dir) / "table10.json"
    if not t10.is_file():
        raise GenrecsysError(f"{t10}: run `genre.py table10` first (Table 8 needs its AUCs)")
    res = json.loads(t10.read_text())["results"]
    auc = {v: {m: r["test"]["auc"] for m, r in per.items()} for v, per in res.items()}
    manifests = {v: load_variant(variant_dir(cfg, v)).manifest for v in res  # what table10 ran
                 if v != "ORI" and v not in CONTROLS}
    price = None
    if cfg.price_as:
        p = DEFAULT_PRICES.get(cfg.price_as)
        if p is None:
            raise GenrecsysError(f"--price-as: no list price for {cfg.price_as!r} (known: {', '.join(DEFAULT_PRICES)})")
        price = (p.prompt, p.completion)
    rows = cost_rows(manifests, auc, price)

    def f(x, d=2):
        return "—" if x is None else f"{x:.{d}f}"

    md = _md(["variant", "LLM rows", "prompt tokens", "completion tokens",
              f"cost (USD{', at ' + cfg.price_as + ' prices' if cfg.price_as else ''})",
              "Imp. matching (AUC pts)", "CCR matching (%)", "Imp. ranking (AUC pts)", "CCR ranking (%)"],
             [[r["variant"], r["rows"], r["prompt_tokens"], r["completion_tokens"], f(r["cost"], 4),
               f(r["imp_matching"]), f(r["ccr_matching"]), f(r["imp_ranking"]), f(r["ccr_ranking"])] for r in rows])
    md += ("\nImp. is a difference of means; whether it is significant per model is in table10.md. "
           "Costs count the LLM rows actually run (see --limit in the manifests).\n")
    _bar([r["variant"] for r in rows], {"cost (USD)": [r["cost"] for r in rows]}, Path(cfg.results_dir) / "table8.png",
         "cost (USD)")
    return {"markdown": md, "rows": rows, "price_as": cfg.price_as,
            "manifests": {v: {k: m[k] for k in ("task", "rows", "limit", "prompt_tokens", "completion_tokens", "cost",
                                                  "cost_total")} for v, m in manifests.items()}}


# ----------------------------------------------------------------------------- statistics (Table 1)
def dataset_stats(path: Path, new_users: set[str], tokenizer) -> dict[str, Any]:
    """GENRE Table 1's rows for one variant directory."""
    import numpy as np

    from genrecsys.data.load import load_dataset

    ds = load_dataset(str(path))
    items = ds.items

    def n_tok(titles) -> float:
        return float(np.mean([len(x) for x in tokenizer(list(titles), add_special_tokens=False)["input_ids"]]))

    per_user = ds.interactions.groupby("user").size()
    syn = ds.synthetic if ds.synthetic is not None else None
    syn_per_user = syn.groupby("user").size() if syn is not None and len(syn) else None
    new = [u for u in per_user.index if u in new_users]
    out: dict[str, Any] = {
        "users": int(len(per_user)), "new_users": len(new), "new_user_ratio": round(len(new) / len(per_user), 4),
        "items": int(len(items)), "synthetic_items": int(len(syn)) if syn is not None else 0,
        "interactions": int(len(ds.interactions)), "items_per_user": round(float(per_user.mean()), 2),
        # a new user's items: the training ones plus the synthetic ones (valid / test excluded)
        "items_per_new_user": round(float(np.mean([per_user[u] - 2 + (syn_per_user.get(u, 0) if syn_per_user is not None
                                                                        else 0) for u in new])), 2) if new else None,
        "tokens_per_title": round(n_tok(items["title"].fillna("").astype(str)), 2),
    }
    if "title_original" in items.columns:
        out["tokens_per_title_before"] = round(n_tok(items["title_original"].fillna("").astype(str)), 2)
    for col in ("topics", "regions"):
        if col in ds.users.columns:
            lists = [list(v) if v is not None and not isinstance(v, float) else None for v in ds.users[col]]
            done = [x for x in lists if x is not None]
            out[f"{col}_per_user"] = round(float(np.mean([len(x) for x in done])), 2) if done else None
            out[f"distinct_{col}"] = len({t for x in done for t in x})
            out[f"users_profiled_{col}"] = len(done)
    return out


def cmd_table1(cfg: GenreTables) -> dict[str, Any]:
    from genrecsys.data.itemtext import load_tokenizer

    tok = load_tokenizer(None, cfg.cache_dir)
    new_users = set(json.loads((variant_dir(cfg, "ORI") / "cold_start.json").read_text())["new_users"])
    names = [v for v in VARIANTS if v not in CONTROLS and (Path(cfg.variants_dir) / VARIANTS[v][0]).is_dir()]
    stats = {v: dataset_stats(variant_dir(cfg, v), new_users, tok) for v in names}
    keys = ["users", "new_users", "new_user_ratio", "items", "synthetic_items", "interactions", "items_per_user",
            "items_per_new_user", "tokens_per_title_before", "tokens_per_title", "topics_per_user", "distinct_topics",
            "regions_per_user", "distinct_regions", "users_profiled_topics"]
    rows = [[k, *[_stat(stats[v].get(k), stats["ORI"].get(k) if k != "tokens_per_title_before" else None)
                  for v in names]] for k in keys]
    md = _md(["statistic", *names], rows)
    md += ("\ntokens per title: WordPiece tokens (the models' tokenizer); 'before' is the title the summarizer "
           "read. items per new user: training items + synthetic items. (+x): change against ORI.\n")
    _bar(names, {"items per new user": [stats[v].get("items_per_new_user") or 0 for v in names],
                 "tokens per title": [stats[v]["tokens_per_title"] for v in names]},
         Path(cfg.results_dir) / "table1.png", "value")
    return {"markdown": md, "stats": stats}


def _stat(x, base) -> str:
    if x is None:
        return "—"
    if isinstance(base, (int, float)) and isinstance(x, (int, float)) and x != base:
        return f"{x} ({x - base:+.2f})" if isinstance(x, float) else f"{x} ({x - base:+d})"
    return str(x)


# ----------------------------------------------------------------------------- output
def _md(header: list[str], rows: list[list[Any]]) -> str:
    from genrecsys.eval.report import markdown_table

    return markdown_table(header, rows)


def _bar(labels: list[str], series: dict[str, list[float]], path: Path, ylabel: str) -> None:
    """Grouped bars: one group per label, one bar per series. AUC axes start near the data,
    not at 0, so that differences of a point are visible (the tables carry the tests)."""
    import numpy as np

    from genrecsys.eval.report import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.4, 0.7 * len(labels) * max(1, len(series)) / 2), 4.0), dpi=110)
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + i * width - 0.4 + width / 2, [v or 0 for v in values], width, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    values = [v for vs in series.values() for v in vs if v]
    if "AUC" in ylabel and values:
        ax.set_ylim(max(0.0, min(values) - 0.02), min(1.0, max(values) + 0.01))
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)



def delta_limits(values: list[float], outlier: float = 0.05) -> tuple[float, float]:
    """Symmetric y-limits for differences against ORI: wide enough for every value (CI
    ends included) up to ``outlier``; a larger one (UP→NG's collapse, −0.26) is drawn
    clipped at the edge with its number, so it does not flatten the others to a line.

    >>> delta_limits([0.004, -0.007, -0.26])
    (-0.00805, 0.00805)
    """
    inliers = [abs(v) for v in values if v == v and abs(v) <= outlier]
    lim = round(1.15 * max(inliers, default=0.01), 6)
    return -lim, lim


def _delta_plot(models: list[str], tests: dict[str, list[dict[str, float]]], path: Path) -> None:
    """ΔAUC vs ORI per model (groups) and variant (markers), with the per-impression 95% CI."""
    import numpy as np

    from genrecsys.eval.report import _pyplot

    plt = _pyplot()
    ends = [t.get(k, t["mean_diff"]) for ts in tests.values() for t in ts for k in ("ci_low", "ci_high")]
    lo, hi = delta_limits(ends)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.2 * len(models) * max(1, len(tests)) / 2), 4.0), dpi=110)
    width = 0.8 / max(1, len(tests))
    x = np.arange(len(models))
    for i, (name, ts) in enumerate(tests.items()):
        xs = x + i * width - 0.4 + width / 2
        mean = np.array([t["mean_diff"] for t in ts])
        low = np.array([t.get("ci_low", t["mean_diff"]) for t in ts])
        high = np.array([t.get("ci_high", t["mean_diff"]) for t in ts])
        inside = (mean >= lo) & (mean <= hi)
        line = ax.errorbar(xs[inside], mean[inside], yerr=[mean[inside] - np.clip(low[inside], lo, hi),
                                                         np.clip(high[inside], lo, hi) - mean[inside]],
                           fmt="o", capsize=3, label=name)
        for xi, m in zip(xs[~inside], mean[~inside]):
            edge = hi if m > hi else lo
            ax.plot([xi], [edge], marker="^" if m > hi else "v", color=line[0].get_color(), label=None)
            ax.annotate(f"{m:+.3f}", (xi, edge), textcoords="offset points", xytext=(0, 8 if m > hi else -12),
                        ha="center", fontsize=7)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_ylim(lo * 1.25, hi * 1.25)
    ax.set_xticks(x)
    ax.set_xticklabels(models)
    ax.set_ylabel("test AUC − ORI (95% CI per impression)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


COMMANDS = {"variants": cmd_variants, "train": cmd_train, "table10": cmd_table10, "table6": cmd_table6,
            "fig7": cmd_fig7, "table8": cmd_table8, "table1": cmd_table1}


def run_command(cfg: GenreTables) -> dict[str, Any]:
    """Run ``cfg.command`` (protocol fields resolved first) and write ``<command>.md`` and
    ``.json`` (with the versions and settings it ran with) beside its plot in
    ``cfg.results_dir``; returns the command's result with ``env`` added."""
    if cfg.command not in COMMANDS:
        raise GenrecsysError(f"unknown GENRE command {cfg.command!r} (known: {', '.join(COMMANDS)})")
    if cfg.warm_start and cfg.fusion_form != "gated":  # before any run trains
        raise GenrecsysError(WARM_NEEDS_GATED)
    cfg = cfg.resolved()
    Path(cfg.results_dir).mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    out = COMMANDS[cfg.command](cfg)
    from importlib.metadata import PackageNotFoundError, version

    def _v(pkg: str) -> str | None:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    # PLM-NR's frozen MiniLM states and the local LLM go through transformers: a new release
    # can move the last digits, so the versions are part of what a table was measured with
    from genrecsys.eval.report import run_environment

    env = run_environment(**{pkg: _v(pkg) for pkg in ("transformers", "sentence-transformers", "pandas")},
                          args=asdict(cfg), wall_s=round(time.perf_counter() - t0, 1))
    base = Path(cfg.results_dir) / cfg.command
    base.with_suffix(".md").write_text(out["markdown"])
    base.with_suffix(".json").write_text(json.dumps({"env": env, **out}, indent=2, ensure_ascii=False, default=str))
    return {"env": env, **out}
