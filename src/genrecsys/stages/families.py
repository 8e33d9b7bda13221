"""The survey's other generative families on one protocol: latent-variable (Mult-VAE,
Mult-DAE), diffusion (DiffRec, L-DiffRec) and adversarial (CFGAN) generators of a user's
interaction vector, the LLM as retriever (sentence-encoder text retrieval, zero-shot
and fine-tuned) and the LLM as ranker (llmrank over SASRec's and BPR's candidates), beside
SASRec and BPR, over seeds, with paired tests against SASRec (and, for llmrank, against
its retriever on the users it ranked, with its position-bias check).

``benchmarks/families.py`` is the command line; runs, resumption and the paired tests are
the generative table's (``genrecsys.stages.generative``), so both tables read alike.

>>> [row.label for row in default_rows()][:3]
['SASRec', 'BPR', 'Mult-VAE']
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from genrecsys.stages.generative import Row

METRICS = ("hit@10", "ndcg@10", "mrr@10", "longtail_ndcg@10")
RECBOLE_MULTVAE_NDCG10 = 0.0433  # ../shared/peers: RecBole 1.2.1's Mult-VAE on this protocol


def default_rows(runs_dir: str | Path | None = None, llm_users: int | None = 200,
                 llm_dtype: str = "bfloat16") -> list[Row]:
    """The table's rows; with ``runs_dir`` also llmrank over that directory's SASRec and BPR
    runs (the same seed's), ranking a fixed sample of ``llm_users`` users (None: all)."""
    rows = [Row("SASRec", "sasrec"), Row("BPR", "bpr"), Row("Mult-VAE", "multvae"), Row("Mult-DAE", "multdae"),
            Row("DiffRec", "diffrec"), Row("L-DiffRec", "ldiffrec"), Row("CFGAN", "cfgan"),
            Row("TextRetrieval (zero-shot)", "textretrieval", {"finetune": False}),
            Row("TextRetrieval (fine-tuned)", "textretrieval")]
    if runs_dir is not None:  # listwise letters (with the position-bias check), then pointwise PMI
        for readout, name in (("letters", "LLMRank"), ("pmi", "LLMRank PMI")):
            for label, retriever in (("SASRec", "sasrec"), ("BPR", "bpr")):
                rows.append(Row(f"{name} (SmolLM2 over {label})", "llmrank",
                                {"retriever": str(Path(runs_dir) / retriever / "seed-{seed}"), "users": llm_users,
                                 "readout": readout, "llm": {"dtype": llm_dtype}}))
    return rows


def llmrank_stats(run_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """An llmrank run's LLM figures on its test users (the answers are the cached ones, so
    this costs no LLM call after the run): the users ranked, answer failures and contract
    violations, and the position-bias check (``genrecsys.models.llmrank.position_bias``).
    Kept as ``llmrank.json`` in the run directory."""
    saved = Path(run_dir) / "llmrank.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    import torch

    from genrecsys.eval.ranking import pad_left
    from genrecsys.experiment import load_run
    from genrecsys.models.llmrank import position_bias

    cfg, split, model = load_run(run_dir, cache_dir)
    who = np.asarray([u for u in split.eval_users("test") if model.sample is None or int(u) in model.sample])
    seqs = torch.as_tensor(pad_left(split.history("test"), who, cfg.data.max_seq_len))
    ranked = {}
    for start in range(0, len(who), 64):
        part = model.rank(torch.as_tensor(who[start:start + 64]), seqs[start:start + 64])
        ranked.update({start + b: r for b, r in part.items()})
    stats = {"retriever": model.config.retriever, **model.counts, "position_bias": position_bias(ranked),
             "ranked_users": [str(split.user_ids[u]) for u in who]}
    saved.write_text(json.dumps(stats, indent=2))
    return stats


def markdown(table: list[dict[str, Any]]) -> str:
    from genrecsys.eval.report import markdown_table

    def ms(e: dict, m: str) -> str:
        return f"{e['test'][m]:.4f} ± {e['test_std'][m]:.4f}"

    header = ["model", "HR@10", "NDCG@10", "MRR@10", "long-tail NDCG@10", "s/epoch", "train s", "epochs",
              "Δ NDCG@10 vs SASRec", "p (t / Wilcoxon)"]
    lines = []
    for e in table:
        t = e.get("vs_sasrec")
        lines.append([e["label"], *(ms(e, m) for m in METRICS), f"{e['seconds_per_epoch']:.2f}",
                      f"{e['train_seconds']:.0f}", f"{e['epochs']:.1f}",
                      "–" if t is None else f"{t['diff']:+.4f}",
                      "–" if t is None else f"{t['t_p']:.2g} / {t['wilcoxon_p']:.2g}"])
    return markdown_table(header, lines)


def goals(table: list[dict[str, Any]]) -> list[str]:
    """The issue's accuracy goals, each as a sentence with the numbers."""
    by = {e["label"]: e["test"]["ndcg@10"] for e in table if np.isfinite(e["test"]["ndcg@10"])}
    out = []
    if "Mult-VAE" in by:
        vae = by["Mult-VAE"]
        out.append(f"Mult-VAE {vae:.4f} vs RecBole's {RECBOLE_MULTVAE_NDCG10}: "
                   f"{'at or above' if vae >= RECBOLE_MULTVAE_NDCG10 else 'below'}"
                   + (f"; vs our BPR {by['BPR']:.4f}: {'at or above' if vae >= by['BPR'] else 'below'}"
                      if "BPR" in by else ""))
    if "Mult-VAE" in by and "DiffRec" in by:
        out.append(f"DiffRec {by['DiffRec']:.4f} vs Mult-VAE {by['Mult-VAE']:.4f}: "
                   f"{'at or above' if by['DiffRec'] >= by['Mult-VAE'] else 'below'}")
    return out


def llmrank_table(runs_dir: Path, rows: list[Row], cache_dir: Path | None = None,
                  metric: str = "ndcg@10") -> list[dict[str, Any]]:
    """Per llmrank row: its LLM figures (mean over seeds) and the paired test against its
    retriever's runs on the users it ranked (their seed-averaged per-user ``metric``)."""
    from genrecsys.eval.compare import compare_runs

    out = []
    for row in rows:
        if row.model != "llmrank":
            continue
        run = Path(runs_dir) / row.slug
        seeds = sorted(p for p in run.glob("seed-*") if (p / "metrics.json").is_file())
        if not seeds:
            continue
        stats = [llmrank_stats(p, cache_dir) for p in seeds]
        retriever = Path(row.params["retriever"]).parent
        c = compare_runs(retriever, run, "test", (metric,), users=stats[0]["ranked_users"])[metric]
        bias = [s["position_bias"] for s in stats if s["position_bias"].get("users")]

        def mean(key: str, src: list[dict[str, Any]] = bias) -> float:
            return float(np.mean([s[key] for s in src])) if src else float("nan")

        out.append({"label": row.label, "retriever": str(retriever), "seeds": len(seeds),
                    "users": len(stats[0]["ranked_users"]), "prompts": mean("prompts", stats),
                    "failed": int(sum(s["failed"] for s in stats)), "violations": int(sum(s["violations"] for s in stats)),
                    "retriever_metric": c.mean_a, "llmrank_metric": c.mean_b, "diff": c.diff,
                    "t_p": c.t_pvalue, "wilcoxon_p": c.wilcoxon_pvalue, "top1_agreement": mean("top1_agreement"),
                    "kendall_tau": mean("kendall_tau"), "first_position_share": mean("first_position_share"),
                    "uniform_share": mean("uniform_share"),
                    "eval_seconds": float(np.mean([json.loads((p / "metrics.json").read_text())["total_seconds"]
                                                   for p in seeds]))})
    return out


def llmrank_markdown(entries: list[dict[str, Any]], metric: str = "NDCG@10") -> str:
    from genrecsys.eval.report import markdown_table

    header = ["model", "seeds", "users ranked", f"retriever {metric}", f"llmrank {metric}", "Δ", "p (t / Wilcoxon)",
              "failed / violations", "top-1 agreement (3 orders)", "Kendall τ between orders",
              "top answer at position A (uniform)", "run s (valid + test)"]
    def opt(x: float, fmt: str = ".3f") -> str:  # order-free readouts have no position check
        return "–" if np.isnan(x) else format(x, fmt)

    lines = [[e["label"], str(e["seeds"]), str(e["users"]), f"{e['retriever_metric']:.4f}", f"{e['llmrank_metric']:.4f}",
              f"{e['diff']:+.4f}", f"{e['t_p']:.2g} / {e['wilcoxon_p']:.2g}", f"{e['failed']} / {e['violations']}",
              opt(e["top1_agreement"]), opt(e["kendall_tau"]),
              "–" if np.isnan(e["first_position_share"]) else
              f"{e['first_position_share']:.3f} ({e['uniform_share']:.3f})", f"{e['eval_seconds']:.0f}"]
             for e in entries]
    return markdown_table(header, lines)
