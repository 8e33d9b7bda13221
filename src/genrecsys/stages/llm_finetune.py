"""The fine-tuned LLM tables (``benchmarks/llm_finetune.py``).

1. Generative retrieval with an LLM: ``llmsid`` (the LLM taught semantic IDs) against
   TIGER on the same codes and SASRec, leave-one-out full ranking: HR@10, NDCG@10,
   long-tail NDCG@10, train hours, decode ms/user and invalid rate, paired tests vs SASRec.
2. The TALLRec few-shot curve: ``tallrec`` untrained (k = 0: the prompted LLM) and trained
   on k = 16 / 64 / 256 / ... examples, AUC
   on the impression protocol (each test target among 24 sampled negatives, one fixed set
   for every model), against BPR and SASRec scored on the same impressions.

Runs go through :func:`genrecsys.stages.generative.train_rows` (``run_experiment`` with
``reuse`` and ``resume``): the command is resumable, a finished run is never trained
again, and an LLM run killed mid-epoch continues from its step checkpoint
(``train.checkpoint_steps``). Token throughput and peak memory of the LLM runs are read
from their run directories.

>>> [r.label for r in fewshot_rows([16, 0], {})]
['BPR (impressions)', 'SASRec (impressions)', 'TALLRec k=0 (the prompted LLM)', 'TALLRec k=16', 'TALLRec k=all (stride 10)']
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrecsys.stages.generative import Row

if TYPE_CHECKING:
    from genrecsys.config import DataConfig

TIGER = "TIGER (residual k-means)"  # the goal's reference: llmsid at or above it
SASREC_IMPRESSIONS = "SASRec (impressions)"
BPR_IMPRESSIONS = "BPR (impressions)"


def retrieval_rows(codes_dir: str, llmsid_params: dict[str, Any], align: float = 0.0,
                   precision: str = "float32") -> list[Row]:
    """SASRec (the reference), TIGER and llmsid on the same semantic IDs; with ``align`` > 0
    also llmsid taught LC-Rec's title <-> code alignment tasks at that weight. ``precision``
    is the LLM rows' training precision (``train.precision``). Full or frozen fine-tuning,
    a LoRA rank other than 8, a precision other than float32, titles in the history and an
    input or LoRA dropout other than 0 are named in the LLM rows' labels: a run is reused by its directory, named
    after the label, so such runs have their own directories in one runs directory (any
    other difference, e.g. ``layers``, is refused when a finished run would be reused).

    >>> [r.label for r in retrieval_rows("codes", {}, precision="bfloat16")][2]
    'llmsid (SmolLM2-135M, LoRA, bfloat16 training)'
    >>> [r.label for r in retrieval_rows("codes", {"dropout": 0.1, "lora_dropout": 0.1}, precision="bfloat16")][2]
    'llmsid (SmolLM2-135M, LoRA, dropout 0.1, LoRA dropout 0.1, bfloat16 training)'
    >>> [r.label for r in retrieval_rows("codes", {"finetune": "full"}) + retrieval_rows("codes", {"lora_r": 32})][2::3]
    ['llmsid (SmolLM2-135M, full fine-tuning)', 'llmsid (SmolLM2-135M, LoRA r 32)']
    >>> retrieval_rows("codes", {"finetune": "full", "titles": 4})[2].label
    'llmsid (SmolLM2-135M, full fine-tuning, title tokens 4)'
    """
    how = {"full": "full fine-tuning", "frozen": "frozen LLM"}.get(llmsid_params.get("finetune") or "lora", "LoRA")
    if how == "LoRA" and llmsid_params.get("lora_r", 8) != 8:
        how += f" r {llmsid_params['lora_r']}"
    trained = "".join(f", {name} {llmsid_params[key]:g}" for key, name in (("titles", "title tokens"),
                                                                          ("dropout", "dropout"),
                                                                          ("lora_dropout", "LoRA dropout"))
                      if llmsid_params.get(key)) + ("" if precision == "float32" else f", {precision} training")
    rows = [Row("SASRec", "sasrec"),
            Row(TIGER, "tiger", {"codes": codes_dir}, "rkmeans"),
            Row(f"llmsid (SmolLM2-135M, {how}{trained})", "llmsid", {"codes": codes_dir, **llmsid_params}, "rkmeans")]
    if align:
        other = "" if how == "LoRA" else f", {how}"
        rows.append(Row(f"llmsid + LC-Rec alignment ({align:g}{other}{trained})", "llmsid",
                        {"codes": codes_dir, **llmsid_params, "align": align}, "rkmeans"))
    return rows


def retrieval_table(runs_dir: Path, rows: list[Row], runs: dict[str, list[dict[str, Any]]],
                    decode: dict[str, dict[str, Any]], codes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The generative table's rows (means over seeds, decode figures, collision rate) with
    each row's paired per-user NDCG@10 test against SASRec (``vs_sasrec``) and, for the
    LLM rows, against TIGER on the same codes (``vs_tiger``): the issue's goal is llmsid at
    or above TIGER. Print it with ``generative.markdown(table, RETRIEVAL_REFERENCES)``."""
    from genrecsys.stages.generative import paired_vs_reference, summarize

    table = summarize(rows, runs, paired_vs_reference(runs_dir, rows, runs), decode, codes)
    vs_tiger = paired_vs_reference(runs_dir, [r for r in rows if r.label == TIGER or r.model == "llmsid"],
                                   runs, reference=TIGER)
    for entry, row in zip(table, rows):
        if row.label in vs_tiger:
            entry["vs_tiger"] = vs_tiger[row.label]
    return table


def select_rows(rows: list[Row], wanted: list[str] | None, strict: bool = True) -> list[Row]:
    """The rows named in ``wanted`` (a label, a run-directory slug or a model name each;
    None or empty: every row), in table order. ``strict``: a name that matches no row is a
    one-line error naming the rows (check once over every part's rows, then select each
    part's with ``strict=False``).

    >>> [r.label for r in select_rows(retrieval_rows("codes", {}), ["tiger", "SASRec"])]
    ['SASRec', 'TIGER (residual k-means)']
    """
    from genrecsys.errors import GenrecsysError

    if not wanted:
        return rows
    named = [r for r in rows if any(w in (r.label, r.slug, r.model) for w in wanted)]
    unknown = [w for w in wanted if not any(w in (r.label, r.slug, r.model) for r in rows)]
    if strict and unknown:
        raise GenrecsysError(f"--rows: no row is {', '.join(map(repr, unknown))}; the rows are "
                             + ", ".join(repr(r.label) for r in rows) + " (or their model names)")
    return named


RETRIEVAL_REFERENCES = {"SASRec": "vs_sasrec", "TIGER": "vs_tiger"}


def fewshot_rows(ks: list[int], tallrec_params: dict[str, Any], stride: int = 10,
                 precision: str = "float32") -> list[Row]:
    """BPR and SASRec on impressions, then TALLRec at each k (0 = every training transition,
    ``stride`` of them packed to a training pass). The stride of k = all and a training
    ``precision`` other than float32 are named in the trained rows' labels (a run is reused
    by its directory, named after the label).

    >>> [r.label for r in fewshot_rows([64, 0], {}, stride=5, precision="bfloat16")][3:]
    ['TALLRec k=64 (bfloat16 training)', 'TALLRec k=all (stride 5, bfloat16 training)']
    """
    trained = "" if precision == "float32" else f"{precision} training"
    rows = [Row(BPR_IMPRESSIONS, "bpr", protocol="impressions"), Row(SASREC_IMPRESSIONS, "sasrec", protocol="impressions"),
            Row("TALLRec k=0 (the prompted LLM)", "tallrec", {**tallrec_params, "finetune": "frozen"},
                protocol="impressions")]
    for k in ks:
        named = ", ".join(x for x in ("" if k else f"stride {stride}", trained) if x)
        rows.append(Row(f"TALLRec k={k or 'all'}" + (f" ({named})" if named else ""), "tallrec",
                        {"examples": k, **tallrec_params, **({} if k else {"stride": stride})}, protocol="impressions"))
    return rows


def train_fewshot(rows: list[Row], runs_dir: Path, seeds: int, train, llm_train, cache_dir: Path | None = None,
                  all_epochs: int | None = None, jobs: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Train the curve's rows (:func:`fewshot_rows`): BPR and SASRec with ``train``, the
    TALLRec rows with ``llm_train``, and k = all capped at ``all_epochs`` epochs where given
    (its epoch is every transition, thousands of steps, where k = 16's is a couple). Label
    -> the seeds' metrics, as :func:`genrecsys.stages.generative.train_rows` (``jobs``
    runs at once)."""
    from dataclasses import replace

    from genrecsys.stages import generative as g

    llm = [r for r in rows if r.model == "tallrec"]
    every = [r for r in llm if r.params.get("examples") == 0]
    results = g.train_rows([r for r in rows if r not in llm], runs_dir, seeds, train, cache_dir, jobs)
    results.update(g.train_rows([r for r in llm if r not in every], runs_dir, seeds, llm_train, cache_dir, jobs))
    results.update(g.train_rows(every, runs_dir, seeds, replace(llm_train, epochs=all_epochs) if all_epochs
                                else llm_train, cache_dir, jobs))
    return results


def fewshot_table(runs_dir: Path, rows: list[Row], runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per row: AUC (and impression MRR / nDCG@10) mean ± std over seeds, train seconds, and
    the paired per-user test of AUC against SASRec and BPR on the same impressions."""
    from genrecsys.eval.report import aggregate_seeds
    from genrecsys.stages.generative import paired_vs_reference

    refs = [r for r in (SASREC_IMPRESSIONS, BPR_IMPRESSIONS) if any(x.label == r for x in rows)]
    tests = {ref: paired_vs_reference(runs_dir, rows, runs, "auc", reference=ref) for ref in refs}
    table = []
    for row in rows:
        agg = aggregate_seeds(runs[row.label])
        table.append({"label": row.label, "model": row.model, "params": row.params, "seeds": agg["seeds"],
                      "test": {m: agg["test"].get(m, float("nan")) for m in ("auc", "mrr", "ndcg@10")},
                      "test_std": {m: agg["test_std"].get(m, float("nan")) for m in ("auc", "mrr", "ndcg@10")},
                      "train_seconds": agg["train_seconds"], "epochs": agg["epochs"],
                      "vs": {ref: tests[ref][row.label] for ref in refs if row.label in tests[ref]}})
    return table


def fewshot_markdown(table: list[dict[str, Any]]) -> str:
    from genrecsys.eval.report import markdown_table

    refs = (SASREC_IMPRESSIONS, BPR_IMPRESSIONS)
    header = ["model", "test AUC", "MRR", "nDCG@10", "train s", *(f"Δ AUC vs {r.split()[0]} (p t / W)" for r in refs)]
    lines = []
    for e in table:
        cells = [e["label"], f"{e['test']['auc']:.4f} ± {e['test_std']['auc']:.4f}", f"{e['test']['mrr']:.4f}",
                 f"{e['test']['ndcg@10']:.4f}", f"{e['train_seconds']:.0f}"]
        for r in refs:
            t = e["vs"].get(r)
            cells.append("–" if t is None else f"{t['diff']:+.4f} ({t['t_p']:.2g} / {t['wilcoxon_p']:.2g})")
        lines.append(cells)
    return markdown_table(header, lines)


def rerank_rows(fewshot: list[Row], candidates: int = 50) -> list[Row]:
    """The curve's TALLRec rows scored the other way the issue asks: as re-rankers of
    SASRec's top ``candidates`` on full ranking (the retrieval table's SASRec, run directory
    ``sasrec``). The first row is SASRec itself, the reference; then one row per TALLRec row
    of ``fewshot``, in its order.

    >>> [r.label for r in rerank_rows(fewshot_rows([64], {}))]
    ['SASRec', "TALLRec k=0 (the prompted LLM) re-ranking SASRec's top 50", "TALLRec k=64 re-ranking SASRec's top 50"]
    """
    return [Row("SASRec", "sasrec")] + [
        Row(f"{r.label} re-ranking SASRec's top {candidates}", "tallrec", {**r.params, "candidates": candidates},
            protocol="full") for r in fewshot if r.model == "tallrec"]


def rerank_fewshot(fewshot: list[Row], runs_dir: Path, seeds: int, train, cache_dir: Path | None = None,
                   candidates: int = 50, jobs: int = 1,
                   data: DataConfig | None = None) -> tuple[list[Row], dict[str, list[dict[str, Any]]]]:
    """:func:`rerank_rows` of the curve, measured: SASRec trained on full ranking (reused
    where the retrieval part trained it), then each seed's trained TALLRec run of the curve
    scored as a re-ranker of the same seed's SASRec top ``candidates`` on the test users
    (:func:`genrecsys.experiment.reevaluate_run`: nothing is trained again; the TALLRec
    epoch is the one selected on impression AUC). Returns the rows and label -> the seeds'
    metrics. ``data``: the curve's dataset (default ML-100K)."""
    from genrecsys.experiment import reevaluate_run
    from genrecsys.stages import generative as g

    rows = rerank_rows(fewshot, candidates)
    ref = rows[0]
    out = g.train_rows([ref], runs_dir, seeds, train, cache_dir, jobs, data)
    for row, source in zip(rows[1:], [r for r in fewshot if r.model == "tallrec"]):
        out[row.label] = [
            reevaluate_run(Path(runs_dir) / source.slug / f"seed-{seed}", Path(runs_dir) / row.slug / f"seed-{seed}",
                           cache_dir=cache_dir, protocol="full", device=train.device, threads=train.threads,
                           params={"retriever": str(Path(runs_dir) / ref.slug / f"seed-{seed}"),
                                   "candidates": candidates})
            for seed in range(train.seed, train.seed + seeds)]
    return rows, out


def rerank_table(runs_dir: Path, rows: list[Row], runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The re-ranking rows as the retrieval table's (HR, NDCG, long-tail NDCG over seeds)
    with each row's paired per-user NDCG@10 test against SASRec: print it with
    ``generative.markdown(table)``."""
    from genrecsys.stages.generative import paired_vs_reference, summarize

    return summarize(rows, runs, paired_vs_reference(runs_dir, rows, runs), {}, {})


def llm_throughput(run_dir: Path, cache_dir: Path | None = None) -> dict[str, float]:
    """Training tokens per epoch, tokens/s and hours of a finished LLM run (one seed's
    directory), from its metrics and the tokens its epoch feeds the LLM (counted from its
    config: a run reused from evidence kept without weights has its throughput too)."""
    from genrecsys.experiment import load_run

    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    cfg, split, model = load_run(run_dir, cache_dir, weights=False)
    tokens = tokens_per_epoch(model, split, cfg.train.batch_size)
    seconds = metrics["train_seconds"]
    return {"tokens_per_epoch": tokens, "train_tokens_per_s": tokens * metrics["epochs"] / seconds if seconds else
            float("nan"), "train_hours": seconds / 3600}


def tokens_per_epoch(model, split, batch_size: int | None = None) -> int:
    """Tokens one training epoch feeds the LLM: prompt + window codes (and titles), padding
    included (llmsid's windows have a fixed length) plus the alignment rows at ``batch_size``
    (default: the model's), or each unit's titles + its candidates' chains (tallrec: real
    tokens, what :meth:`TALLRec.unit_tokens` counts)."""
    from genrecsys.data.batches import sequence_windows

    if _windowed(model):
        c = model.config
        x, _, _ = sequence_windows(split.train, c.max_len)
        steps = -(-len(x) // (batch_size or model.default_batch_size))
        window = len(model.prompt_ids) + c.max_len * model._slot() + model.tok.code_length - 1
        align = 0  # LC-Rec's alignment rows, `align_items` of each table per step
        if c.align:
            align = steps * c.align_items * sum(getattr(model, t).shape[-1] for t, task in
                                                (("t2c_rows", "title2code"), ("c2t_rows", "code2title"))
                                                if task in c.align_tasks)
        return len(x) * window + align
    return int(sum(model.unit_tokens(w, n) for w, n in zip(*model._examples)))


def probe_cost(model, split, steps: int = 4, batch_size: int | None = None, users: int = 8,
               threads: int | None = None, precision: str = "float32") -> dict[str, float]:
    """What a full run would cost, from a few steps: training tokens/s (the first step is a
    warm-up, not timed; under bfloat16 autocast for ``precision`` bfloat16, as
    ``train.precision`` trains), the projected hours per epoch, scoring ms/user on the
    model's own protocol (full ranking: every item's exact score; impressions: 25
    candidates; float32, as every evaluation) with the minutes one evaluation of every user
    takes, and this process's peak RSS."""
    import resource
    import time

    import torch

    from genrecsys.eval.ranking import pad_left
    from genrecsys.train.loop import training_precision

    if threads:
        torch.set_num_threads(threads)
    bs = batch_size or model.default_batch_size
    opt = model.make_optimizer(model.default_lr, 0.0)
    model.train()
    rng = np.random.default_rng(0)

    def epochs():  # a few-shot row's epoch can be shorter than the probe: go on into the next
        while True:
            yield from model.batches(split, bs, rng)

    batches = epochs()
    seconds, tokens = [], []
    for i in range(steps + 1):
        batch = next(batches)
        fed = [0]

        def count(mod, args, kw, fed=fed):  # llmsid: every position of its fixed-length rows
            fed[0] += int(kw["attention_mask"].numel())

        if _windowed(model):
            hook = model.decoder.register_forward_pre_hook(count, with_kwargs=True)
        else:
            fed[0] = sum(model.unit_tokens(w, n) for w, n in zip(batch["window"].tolist(), batch["negatives"].tolist()))
            hook = None
        t0 = time.perf_counter()
        with training_precision(precision):
            loss = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if hook is not None:
            hook.remove()
        if i:  # the first step warms kernels and allocations up
            seconds.append(time.perf_counter() - t0)
            tokens.append(fed[0])
    tok_s = sum(tokens) / sum(seconds)
    per_epoch = tokens_per_epoch(model, split, batch_size)
    model.eval()
    who = split.eval_users("valid")[:users]
    seqs = torch.as_tensor(pad_left(split.history("valid"), who, 50))
    u = torch.as_tensor(who)
    t0 = time.perf_counter()
    with torch.no_grad():
        if model.protocol == "impressions":  # its evaluation: a target among 24 other candidates
            cands = torch.as_tensor(np.random.default_rng(0).integers(1, split.n_items + 1, (len(who), 25)))
            model.score_candidates(u, seqs, cands)
        else:  # full ranking: every item's score
            model.score(u, seqs)
    score_ms = (time.perf_counter() - t0) * 1000 / len(who)
    return {"precision": precision, "train_tokens_per_s": tok_s, "tokens_per_epoch": per_epoch, "epoch_hours": per_epoch / tok_s / 3600,
            "eval_protocol": model.protocol, "score_ms_per_user": score_ms,
            "eval_minutes": score_ms * split.n_users / 60000,
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def probe_models(split, models: dict[str, tuple[str, dict[str, Any]]], steps: int, threads: int | None = None,
                 precisions: tuple[str, ...] = ("float32",), batch_size: int | None = None) -> dict[str, dict[str, float]]:
    """:func:`probe_cost` of each model (name -> (registry model, its parameters)) in each
    training precision, side by side in this process: keys ``name`` for the first precision,
    ``name-precision`` for the others (one model per name, built once; each precision's steps
    continue on the weights the previous one trained, which changes nothing in a timing)."""
    from genrecsys.experiment import build_model

    out = {}
    for name, (kind, params) in models.items():
        model = build_model(kind, params, split)
        for precision in precisions:
            key = name if precision == precisions[0] else f"{name}-{precision}"
            out[key] = probe_cost(model, split, steps, batch_size, threads=threads, precision=precision)
        del model
    return out


def _windowed(model) -> bool:
    """llmsid feeds fixed-length windows (padding computed too); tallrec's units are counted in real tokens."""
    from genrecsys.models.llmrec import LLMSID

    return isinstance(model, LLMSID)
