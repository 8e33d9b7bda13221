"""The survey's other generative families on one protocol: latent-variable (Mult-VAE,
Mult-DAE), diffusion (DiffRec, L-DiffRec) and adversarial (CFGAN) generators of a user's
interaction vector, and the LLM as retriever (sentence-encoder text retrieval, zero-shot
and fine-tuned), beside SASRec and BPR, over seeds, with paired tests against SASRec.

``benchmarks/families.py`` is the command line; runs, resumption and the paired tests are
the generative table's (``genrecsys.stages.generative``), so both tables read alike.

>>> [row.label for row in default_rows()][:3]
['SASRec', 'BPR', 'Mult-VAE']
"""
from __future__ import annotations

from typing import Any

import numpy as np

from genrecsys.stages.generative import Row

METRICS = ("hit@10", "ndcg@10", "mrr@10", "longtail_ndcg@10")
RECBOLE_MULTVAE_NDCG10 = 0.0433  # ../shared/peers: RecBole 1.2.1's Mult-VAE on this protocol


def default_rows() -> list[Row]:
    return [Row("SASRec", "sasrec"), Row("BPR", "bpr"), Row("Mult-VAE", "multvae"), Row("Mult-DAE", "multdae"),
            Row("DiffRec", "diffrec"), Row("L-DiffRec", "ldiffrec"), Row("CFGAN", "cfgan"),
            Row("TextRetrieval (zero-shot)", "textretrieval", {"finetune": False}),
            Row("TextRetrieval (fine-tuned)", "textretrieval")]


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
