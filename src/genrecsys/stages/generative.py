"""The generative-retrieval table: SASRec, HSTU, TIGER (two quantizers) and GenRec (digit
ids and semantic ids) on one split, over seeds, with paired tests against SASRec.

``benchmarks/generative.py`` is the command line over these functions. Every run goes
through ``run_experiment(..., reuse=True)`` under its directory lock, so the command is
resumable and several processes (``jobs``) share the runs without training one twice.

>>> [row.label for row in default_rows({"rkmeans": "c1", "rqvae": "c2"})][:3]
['SASRec', 'HSTU', 'TIGER (residual k-means)']
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig

REFERENCE = "SASRec"
METRICS = ("hit@1", "hit@5", "hit@10", "ndcg@5", "ndcg@10", "longtail_ndcg@10")


@dataclass(frozen=True)
class Row:
    label: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    codes: str | None = None  # quantizer whose semantic ids the row reads (for the collision rate)
    protocol: str | None = None  # evaluation protocol (None: the model's own)

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.label.lower()).strip("-").replace("--", "-")


def default_rows(codes: dict[str, str]) -> list[Row]:
    """The issue's six rows; ``codes`` maps quantizer name -> semantic-id directory."""
    return [
        Row("SASRec", "sasrec"),
        Row("HSTU", "hstu"),
        Row("TIGER (residual k-means)", "tiger", {"codes": codes["rkmeans"]}, "rkmeans"),
        Row("TIGER (RQ-VAE)", "tiger", {"codes": codes["rqvae"]}, "rqvae"),
        Row("GenRec (digits, all transitions)", "genrec", {"training": "windows"}),
        Row("GenRec (semantic IDs)", "genrec", {"training": "windows", "codes": codes["rkmeans"]}, "rkmeans"),
    ]


def build_codes(split, out_dir: Path, cache_dir: Path | None, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Text semantic ids with both quantizers: quantizer -> {"dir", "stats"} (reused when built)."""
    from genrecsys.generative.quantize import QuantizeConfig
    from genrecsys.generative.semantic_ids import SemanticIDConfig, build_semantic_ids, load_semantic_ids

    out = {}
    for quantizer in ("rkmeans", "rqvae"):
        d = Path(out_dir) / f"codes-{quantizer}"
        if (d / "stats.json").is_file():  # built before (maybe on another machine): checked against the split
            sid = load_semantic_ids(d, split)
        else:
            sid = build_semantic_ids(split, SemanticIDConfig(quantize=QuantizeConfig(quantizer=quantizer, seed=seed)),
                                     cache_dir=cache_dir,
                                     out_dir=d)
        out[quantizer] = {"dir": str(d), "stats": sid.stats}
    return out


def _train_one(job: tuple[Row, int, str, TrainConfig, str | None, DataConfig]) -> dict[str, Any]:
    row, seed, run_dir, train, cache_dir, data = job
    from genrecsys.experiment import run_experiment

    # "{seed}" in a string parameter names this seed's input (e.g. llmrank's retriever run)
    params = {k: v.replace("{seed}", str(seed)) if isinstance(v, str) else v for k, v in row.params.items()}
    cfg = ExperimentConfig(model=row.model, model_params=params, data=data, train=replace(train, seed=seed))
    if row.protocol:
        cfg.eval.protocol = row.protocol
    # resume: a run killed mid-way (a timeout, a lost machine) continues from its checkpoint
    return run_experiment(cfg, run_dir, cache_dir=cache_dir, reuse=True, resume=True)


def train_rows(rows: list[Row], runs_dir: Path, seeds: int, train: TrainConfig, cache_dir: Path | None = None,
               jobs: int = 1, data: DataConfig | None = None) -> dict[str, list[dict[str, Any]]]:
    """Train every (row, seed) not finished yet on ``data`` (default: ML-100K, leave-one-out);
    label -> the seeds' metrics, in seed order."""
    # seed-major: an interrupted run leaves every row with the same seeds done
    todo = [(row, train.seed + i, str(Path(runs_dir) / row.slug / f"seed-{train.seed + i}"), train,
             str(cache_dir) if cache_dir else None, data or DataConfig()) for i in range(seeds) for row in rows]
    if jobs > 1:  # spawn: a forked torch process can deadlock in its thread pools
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_train_one, todo))
    else:
        results = [_train_one(job) for job in todo]
    out: dict[str, list[dict[str, Any]]] = {}
    for (row, *_), metrics in zip(todo, results):
        out.setdefault(row.label, []).append(metrics)
    return out


def decode_stats(run_dir: Path, cache_dir: Path | None = None, beam: int = 20, users: int | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """Beam search over the test users of a generative run: ms per user (constrained, beam
    ``beam``, top 10) and the invalid rate of the same search unconstrained.

    Kept in the run directory as ``decode.json`` and reused for the same beam and users,
    whatever device asks again: the timing stays the one measured where the run was decoded
    (its ``decode_device``), so a table rebuilt on a CPU keeps a GPU's figures.
    """
    saved = Path(run_dir) / "decode.json"
    if saved.is_file():
        old = json.loads(saved.read_text())
        if old.get("beam") == beam and old.get("users") == users:
            return old["stats"]
    stats = {**_decode(Path(run_dir), cache_dir, beam, users, device), "decode_device": device}
    saved.write_text(json.dumps({"beam": beam, "users": users, "stats": stats}, indent=2))
    return stats


def _decode(run_dir: Path, cache_dir: Path | None, beam: int, users: int | None, device: str) -> dict[str, float]:
    import torch

    from genrecsys.eval.ranking import pad_left
    from genrecsys.experiment import load_run
    from genrecsys.generative.beam import beam_search

    cfg, split, model = load_run(run_dir, cache_dir)
    model.to(device)
    who = split.eval_users("test")[:users]
    seqs = torch.as_tensor(pad_left(split.history("test"), who, cfg.data.max_seq_len), device=device)
    u = torch.as_tensor(who, device=device)
    beam_search(model, u[:8], seqs[:8], k=10, beam=beam)  # warm-up: kernels and caches are not timed
    out = {}
    for constrained in (True, False):
        t0, invalid, generated = time.perf_counter(), 0, 0
        for s in range(0, len(who), 64):
            r = beam_search(model, u[s:s + 64], seqs[s:s + 64], k=10, beam=beam, constrained=constrained)
            invalid, generated = invalid + r.invalid, generated + r.generated
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if constrained:
            out["decode_ms_per_user"] = (time.perf_counter() - t0) * 1000 / len(who)
            out["invalid_rate_constrained"] = invalid / generated
        else:
            out["invalid_rate_unconstrained"] = invalid / generated
    return out


def paired_vs_reference(runs_dir: Path, rows: list[Row], runs: dict[str, list[dict[str, Any]]],
                        metric: str = "ndcg@10", reference: str = REFERENCE) -> dict[str, dict[str, float]]:
    """label -> paired t-test and Wilcoxon p of ``metric`` per user (seed-averaged) vs the
    ``reference`` row (SASRec); {} where ``rows`` do not include the reference.

    ``runs`` (label -> the seeds' metrics, :func:`train_rows`'s): each pair is on the seeds
    of the two rows' means, not on every seed directory they share — a runs directory may
    hold more seeds, trained by a command with a larger ``--seeds``."""
    from genrecsys.eval.compare import compare_runs, seeds_of

    ref = next((r for r in rows if r.label == reference), None)
    if ref is None:  # e.g. a benchmark asked for some rows only
        return {}
    out = {}
    for row in rows:
        if row.label != reference:
            seeds = seeds_of(runs[ref.label], runs[row.label])
            c = compare_runs(Path(runs_dir) / ref.slug, Path(runs_dir) / row.slug, "test", (metric,),
                             seeds=seeds)[metric]
            out[row.label] = {"diff": c.diff, "t_p": c.t_pvalue, "wilcoxon_p": c.wilcoxon_pvalue}
    return out


def summarize(rows: list[Row], runs: dict[str, list[dict[str, Any]]], tests: dict[str, dict[str, float]],
              decode: dict[str, dict[str, float]], codes: dict[str, dict[str, Any]],
              metrics: tuple[str, ...] = METRICS) -> list[dict[str, Any]]:
    """One plain dict per row: means/stds over seeds of ``metrics`` and the row's diagnostics."""
    from genrecsys.eval.report import aggregate_seeds

    table = []
    for row in rows:
        agg = aggregate_seeds(runs[row.label])
        entry = {"label": row.label, "model": row.model, "params": row.params, "seeds": agg["seeds"],
                 "test": {m: agg["test"].get(m, float("nan")) for m in metrics},
                 "test_std": {m: agg["test_std"].get(m, float("nan")) for m in metrics},
                 "seconds_per_epoch": agg["seconds_per_epoch"], "train_seconds": agg["train_seconds"],
                 "epochs": agg["epochs"], **decode.get(row.label, {}), **({"vs_sasrec": tests[row.label]}
                                                                          if row.label in tests else {})}
        if row.codes:
            entry["collision_rate"] = codes[row.codes]["stats"].get("collision_rate")
        table.append(entry)
    return table


def markdown(table: list[dict[str, Any]], references: dict[str, str] | None = None) -> str:
    """The table in markdown; ``references`` maps a reference row's short name to the entry
    key holding each row's paired test against it (default: SASRec, ``vs_sasrec``): one
    difference column and one p column per reference."""
    from genrecsys.eval.report import markdown_table

    references = references or {"SASRec": "vs_sasrec"}

    def ms(e: dict, m: str) -> str:
        return f"{e['test'][m]:.4f} ± {e['test_std'][m]:.4f}"

    def opt(x: float | None, fmt: str) -> str:
        return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, fmt)

    header = ["model", "HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "long-tail NDCG@10", "s/epoch", "train s",
              "decode ms/user (beam 20)", "invalid (unconstrained)", "collision rate"]
    for name in references:
        header += [f"Δ NDCG@10 vs {name}", "p (t / Wilcoxon)"]
    lines = []
    for e in table:
        line = [e["label"], *(ms(e, m) for m in METRICS), f"{e['seconds_per_epoch']:.1f}",
                f"{e['train_seconds']:.0f}",
                opt(e.get("decode_ms_per_user"), ".1f") + (f" ({e['decode_device']})" if "decode_device" in e else ""),
                opt(e.get("invalid_rate_unconstrained"), ".3f"), opt(e.get("collision_rate"), ".3f")]
        for key in references.values():
            t = e.get(key)
            line += ["–" if t is None else f"{t['diff']:+.4f}",
                     "–" if t is None else f"{t['t_p']:.2g} / {t['wilcoxon_p']:.2g}"]
        lines.append(line)
    return markdown_table(header, lines)


def save(table: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=2, default=float))
