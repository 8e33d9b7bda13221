"""Cost curves: how data preparation, training and full-ranking evaluation grow with the
number of interactions, on synthetic MovieLens-like data (``data.synthetic.write_ml_like``),
and what RELAND's LLM phase would cost at millions of users.

Each (size, model) is measured in a fresh process, so its peak resident memory is its own:
load + leave-one-out split, model construction, training steps and a full-ranking pass.
Seconds per epoch are measured over the whole epoch when it has at most ``max_steps``
batches, else as the epoch's set-up (up to its first batch) plus the mean of the first
``max_steps`` steps times the epoch's batch count (the column ``measured`` says which). Full ranking scores every item for half of a
sample of ``eval_users`` test users, then for all of it: the difference gives the cost per
user, the rest a fixed cost, and the full pass is estimated as fixed + per user x users.
``benchmarks/scale.py`` is the command.
"""
from __future__ import annotations

import math
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

SCALE_MODELS = ("bpr", "lightgcn", "sasrec")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


@dataclass(frozen=True)
class ScaleSettings:
    max_steps: int = 200  # training batches timed per epoch, at most
    eval_users: int = 2000  # test users ranked against all items, then scaled
    threads: int = 2
    seed: int = 0


def dataset_dir(root: str | Path, n_interactions: int, seed: int = 0) -> tuple[Path, float | None]:
    """The synthetic dataset of ``n_interactions`` under ``root``, written if missing;
    returns (directory, seconds spent writing it or None when it was there)."""
    import json

    from genrecsys.data.synthetic import write_ml_like

    d = Path(root) / f"ml-like-{n_interactions}-s{seed}"
    if (d / "meta.json").is_file() and json.loads((d / "meta.json").read_text()).get("seed") == seed:
        return d, None
    t = time.perf_counter()
    write_ml_like(d, n_interactions, seed=seed)
    return d, time.perf_counter() - t


def measure(data_dir: str | Path, model_name: str, settings: ScaleSettings) -> dict[str, Any]:
    """One (dataset, model) cell, in this process: call it in a fresh one (``measure_in_child``)."""
    import torch

    from genrecsys.data.schema import Dataset
    from genrecsys.data.splits import leave_one_out
    from genrecsys.eval.ranking import evaluate_ranking
    from genrecsys.experiment import build_model
    from genrecsys.train.loop import score_fn

    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    out: dict[str, Any] = {"model": model_name, "baseline_rss_mb": _rss_mb()}
    t = time.perf_counter()
    ds = Dataset.load(data_dir)
    out["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    split = leave_one_out(ds)
    out["split_s"] = time.perf_counter() - t
    out.update(interactions=int(len(ds.interactions)), users=split.n_users, items=split.n_items,
               data_rss_mb=_rss_mb())
    del ds
    t = time.perf_counter()
    model = build_model(model_name, {}, split)
    out["build_s"] = time.perf_counter() - t
    batch_size = model.default_batch_size
    optim = model.make_optimizer(model.default_lr, model.default_weight_decay)
    rng = np.random.default_rng(settings.seed)
    model.train()
    model.on_train_start()
    batches = model.batches(split, batch_size, rng)
    t = time.perf_counter()
    first = next(batches, None)  # an epoch's set-up (negative sampling, windows) happens here
    setup_s = time.perf_counter() - t
    steps, t = 0, time.perf_counter()
    batch = first
    while batch is not None:
        loss = model.loss(batch)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        steps += 1
        if steps == settings.max_steps:
            break
        batch = next(batches, None)
    step_s = (time.perf_counter() - t) / max(steps, 1)  # a batch's build and its training step
    rest = sum(1 for _ in batches)  # the epoch's remaining batches, built but not trained
    out.update(batch_size=batch_size, steps_timed=steps, batches_per_epoch=steps + rest, epoch_setup_s=setup_s,
               epoch_s=setup_s + step_s * (steps + rest), measured="full epoch" if rest == 0 else f"{steps} steps")
    model.eval()
    model.on_eval_start()
    users = split.eval_users("test")
    sample = np.sort(np.random.default_rng(settings.seed).choice(users, min(settings.eval_users, len(users)), replace=False))
    # Two passes, half the sample and all of it: the difference is the per-user cost, the
    # rest a fixed cost (histories and targets for every user) paid once by a full pass.
    half = max(1, len(sample) // 2)
    t = time.perf_counter()
    evaluate_ranking(score_fn(model), split, "test", (10,), users=sample[:half])
    t_half = time.perf_counter() - t
    t = time.perf_counter()
    res = evaluate_ranking(score_fn(model), split, "test", (10,), users=sample)
    t_all = time.perf_counter() - t
    per_user = (t_all - t_half) / (len(sample) - half) if len(sample) > half and t_all > t_half else t_all / len(sample)
    fixed = max(0.0, t_all - per_user * len(sample))
    out.update(eval_users_timed=len(sample), eval_users=len(users), eval_fixed_s=fixed, eval_per_user_s=per_user,
               eval_s=fixed + per_user * len(users), ndcg_at_10_sample=float(res.metrics["ndcg@10"]),
               peak_rss_mb=_rss_mb())
    return out


def measure_in_child(data_dir: str | Path, model_name: str, settings: ScaleSettings) -> dict[str, Any]:
    """:func:`measure` in a fresh spawned process (its own peak RSS, no memory of earlier cells).
    A child killed on the way (the kernel's out-of-memory killer) gives a row with ``error``."""
    from concurrent.futures.process import BrokenProcessPool

    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        try:
            return pool.submit(measure, str(data_dir), model_name, settings).result()
        except BrokenProcessPool:
            return {"model": model_name, "data_dir": str(data_dir), "seconds": time.perf_counter() - t,
                    "error": "the measuring process was killed (out of memory?)"}


def growth_exponent(sizes: list[float], values: list[float]) -> float | None:
    """Least-squares slope of log(value) on log(size): 1 is linear, 2 quadratic."""
    pts = [(math.log(s), math.log(v)) for s, v in zip(sizes, values) if s > 0 and v and v > 0]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


COST_COLUMNS = (("load_s", "load s"), ("split_s", "split s"), ("build_s", "model build s"), ("epoch_s", "s/epoch"),
                ("eval_s", "full-ranking eval s"), ("peak_rss_mb", "peak RSS MB"))


def scale_table(rows: list[dict[str, Any]], worse_than: float = 1.15) -> tuple[str, dict[str, Any]]:
    """Markdown: one line per (model, size), then each column's growth exponent per model;
    a step whose exponent exceeds ``worse_than`` is named as growing worse than linear."""
    failed = [r for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    lines = ["| model | interactions | users | items | " + " | ".join(h for _, h in COST_COLUMNS) + " | epoch measured |",
             "|---|---|---|---|" + "---|" * len(COST_COLUMNS) + "---|"]
    for r in failed:
        lines.append(f"| {r['model']} | {r.get('interactions', '?'):,} | | | {r['error']} |" + " |" * len(COST_COLUMNS))
    for r in rows:
        lines.append(f"| {r['model']} | {r['interactions']:,} | {r['users']:,} | {r['items']:,} | "
                     + " | ".join(f"{r[k]:.1f}" if k != "peak_rss_mb" else f"{r[k]:,.0f}" for k, _ in COST_COLUMNS)
                     + f" | {r['measured']} |")
    exps: dict[str, dict[str, float | None]] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        sizes = [r["interactions"] for r in mine]
        # memory above the interpreter's own (torch loaded): what the data and model take
        exps[model] = {k: growth_exponent(sizes, [r[k] - (r["baseline_rss_mb"] if k == "peak_rss_mb" else 0)
                                                  for r in mine]) for k, _ in COST_COLUMNS}
    lines += ["", "Growth exponent (slope of log cost on log interactions; peak RSS above the fresh interpreter's):", "",
              "| model | " + " | ".join(h for _, h in COST_COLUMNS) + " |", "|---|" + "---|" * len(COST_COLUMNS)]
    worse = []
    for model, e in exps.items():
        lines.append(f"| {model} | " + " | ".join("n/a" if e[k] is None else f"{e[k]:.2f}" for k, _ in COST_COLUMNS) + " |")
        worse += [f"{model} {h} ({e[k]:.2f})" for k, h in COST_COLUMNS if e[k] is not None and e[k] > worse_than]
    lines += ["", "Worse than linear: " + (", ".join(worse) if worse else f"none (every exponent <= {worse_than})") + "."]
    return "\n".join(lines), {"exponents": exps, "worse_than_linear": worse}


@dataclass(frozen=True)
class PerCall:
    """Measured figures of one LLM call (e.g. a RELAND seed prompt)."""
    prompt_tokens: float
    completion_tokens: float
    completion_tokens_per_s: float
    source: str = ""

    @classmethod
    def from_reland_llm(cls, llm: dict[str, Any], source: str = "") -> "PerCall":
        """From the ``llm`` block of a RELAND run (``reasoning.pool``'s accounting)."""
        calls = max(llm["calls"], 1)
        return cls(llm["prompt_tokens"] / calls, llm["completion_tokens"] / calls,
                   llm["constrained_tokens_per_s"] or llm.get("unconstrained_tokens_per_s") or float("nan"), source)


def reland_cost_rows(user_counts: list[int], per_call: PerCall, *, seed_fraction: float = 0.1, seed_cap: int = 10_000,
                     interactions_per_user: float = 100.0) -> list[dict[str, Any]]:
    """LLM calls, tokens and decode hours (one stream at the measured rate) for RELAND's
    seed pool (the authors' 10% of users, and a fixed pool of ``seed_cap`` seeds) against
    prompting every user, or every interaction, with a prompt of the same size."""
    out = []
    for n in user_counts:
        for strategy, calls in (("RELAND, 10% seeds" if seed_fraction == 0.1 else f"RELAND, {seed_fraction:.0%} seeds",
                                 math.ceil(n * seed_fraction)),
                                (f"RELAND, {seed_cap:,} seeds", min(n, seed_cap)),
                                ("per user", n), ("per interaction", int(n * interactions_per_user))):
            out.append({"users": n, "strategy": strategy, "calls": calls,
                        "tokens": calls * (per_call.prompt_tokens + per_call.completion_tokens),
                        "hours": calls * per_call.completion_tokens / per_call.completion_tokens_per_s / 3600})
    return out


def reland_cost_table(rows: list[dict[str, Any]], per_call: PerCall) -> str:
    lines = [f"Per call (measured: {per_call.source}): {per_call.prompt_tokens:.0f} prompt + "
             f"{per_call.completion_tokens:.0f} completion tokens, {per_call.completion_tokens_per_s:.1f} completion "
             "tokens/s on one stream.", "", "| users | strategy | LLM calls | tokens | decode hours, one stream |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['users']:,} | {r['strategy']} | {r['calls']:,} | {r['tokens']:,.0f} | {r['hours']:,.1f} |")
    return "\n".join(lines)
