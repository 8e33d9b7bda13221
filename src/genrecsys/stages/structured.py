"""Structured generation measured: each LLM task of the toolkit answered with and without
its template's output contract, on real prompts, by the same model.

Tasks (ML-100K prompts, as the features build them):

- ``NS``: GENRE's item summarizer (``summarize_item``: one "[title]");
- ``UP``: GENRE's user profiler (``profile_user``: topics from the closed movie vocabulary);
- ``NG``: GENRE's item generator (``generate_item``: a JSON item whose category is a genre);
- ``CoT``: RELAND's seed rationale (``reland_cot``: Step 1 / Step 2 with catalog titles).

Per task and side the table reports format failures (the feature's own parser cannot read
the answer), out-of-vocabulary values, out-of-catalog item references, re-asks, contract
violations, tokens, and decode speed; :func:`speed_rows` adds batch-size sweeps and the
grammar engines' compile times. ``benchmarks/llm_structured.py`` is the command.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from genrecsys.config import ExperimentConfig, LLMConfig

TASKS = ("NS", "UP", "NG", "CoT")
TEMPLATES = {"NS": "summarize_item", "UP": "profile_user", "NG": "generate_item", "CoT": "reland_cot"}


@dataclass
class TaskInput:
    """What one task sends: its template, rows of variables, answer budget, and how an
    answer is judged (``parser`` raises ParseError; ``judge`` returns extra counts)."""

    task: str
    template: str
    rows: list[dict[str, Any]]
    max_tokens: int
    parser: Callable[[str], Any] | None
    judge: Callable[[list[Any]], dict[str, int]]


def task_inputs(tasks: Sequence[str], n_rows: int, cache_dir: Path | None = None, seed: int = 0) -> list[TaskInput]:
    """The first ``n_rows`` prompts of each task on ML-100K, built the way the features build them."""
    import numpy as np

    from genrecsys.augment.generate import GenerateConfig, _line, parse_item
    from genrecsys.augment.inputs import category_vocabulary, item_categories, item_rows, user_histories
    from genrecsys.augment.profile import ProfileConfig, parse_profile
    from genrecsys.augment.summarize import SummarizeConfig, parse_title
    from genrecsys.augment.vocab import Vocabulary
    from genrecsys.experiment import load_split
    from genrecsys.reasoning.pool import PoolConfig, prompt_rows
    from genrecsys.reasoning.rationale import TitleCatalog, parse_rationale

    split = load_split(ExperimentConfig(), cache_dir)  # ML-100K, leave-one-out: the main job's split
    ds = split.dataset
    rng = np.random.default_rng(seed)
    out: list[TaskInput] = []
    titles = ds.titles()
    histories = user_histories(ds, cap=30)
    users = [u for u in ds.users["user"].astype(str) if histories.get(u)]
    users = [users[i] for i in sorted(rng.choice(len(users), size=min(n_rows, len(users)), replace=False))]
    for task in tasks:
        if task == "NS":
            items = item_rows(ds).head(n_rows)
            cfg = SummarizeConfig()
            out.append(TaskInput(task, TEMPLATES[task], items[["title", "description", "category"]].to_dict("records"),
                                 cfg.max_tokens, lambda t, w=cfg.max_words: parse_title(t, w), lambda parsed: {}))
        elif task == "UP":
            vocab, cfg = Vocabulary.movies(), ProfileConfig()
            rows = [{"history": [titles.get(i, i) for i in histories[u]], "topics": list(vocab.topics),
                     "regions": list(vocab.regions), "user_id": u} for u in users]
            out.append(TaskInput(task, TEMPLATES[task], rows, cfg.max_tokens,
                                 lambda t, v=vocab: parse_profile(t, v), lambda parsed: {}))
        elif task == "NG":
            cats, categories, cfg = item_categories(ds), category_vocabulary(ds), GenerateConfig()
            rows = [{"history": [_line(titles.get(i, i), cats.get(i, [])) for i in histories[u][:cfg.max_history]],
                     "categories": categories, "invented": []} for u in users]
            out.append(TaskInput(task, TEMPLATES[task], rows, cfg.max_tokens, lambda t, c=categories: parse_item(t, c),
                                 lambda parsed: {"out_of_vocabulary": sum(1 for p in parsed
                                                                          if p is not None and not p["category"])}))
        elif task == "CoT":
            cfg = PoolConfig()
            catalog = TitleCatalog.from_split(split, cfg.fuzzy_cutoff)
            seeds = [int(np.where(split.user_ids == u)[0][0]) for u in users if u in set(split.user_ids.tolist())]
            rows = prompt_rows(split, seeds, catalog, cfg)
            known = {c.casefold() for r in rows[:1] for c in r.get("categories", [])}

            def judge(texts: list[Any], catalog=catalog, known=known) -> dict[str, int]:
                counts = {"format_failures": 0, "out_of_catalog": 0, "out_of_vocabulary": 0}
                for text in texts:
                    if text is None:
                        continue
                    r = parse_rationale(text)
                    counts["format_failures"] += not r.parsed
                    counts["out_of_catalog"] += len(catalog.match_all(r.item_names)[1])
                    counts["out_of_vocabulary"] += sum(c.casefold() not in known for c in r.categories)
                return counts

            out.append(TaskInput(task, TEMPLATES[task], rows, cfg.max_tokens, None, judge))
        else:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return out


def measure(inp: TaskInput, llm_cfg: LLMConfig, contracts: bool, cache_dir: Path | None = None) -> dict[str, Any]:
    """Answer every row of one task once (a throwaway answer cache: nothing is served from
    an earlier run), and count what came back."""
    from genrecsys.llm.client import LLM
    from genrecsys.llm.types import SamplingParams

    cfg = replace(llm_cfg, contracts=contracts)
    llm = LLM(cfg, cache_dir, cache_path=":memory:")
    try:
        t0 = time.perf_counter()
        comps = llm.run_template(inp.template, inp.rows, params=SamplingParams(max_tokens=inp.max_tokens),
                                 parser=inp.parser, task=inp.task)
        wall = time.perf_counter() - t0
    finally:
        llm.close()
    u = llm.stats.task(inp.task)
    judged = inp.judge([c.text if c.ok else None for c in comps] if inp.parser is None
                       else [c.parsed if c.ok else None for c in comps])
    n = len(comps)
    return {"task": inp.task, "contract": contracts, "engine": cfg.grammar_engine if contracts else "-",
            "batch": cfg.batch_size,
            "rows": n, "format_failures": u.format_failures + judged.get("format_failures", 0),
            "out_of_vocabulary": u.out_of_vocabulary + judged.get("out_of_vocabulary", 0),
            "out_of_catalog": u.out_of_catalog + judged.get("out_of_catalog", 0),
            "reasks": u.reasks, "contract_violations": u.contract_violations, "truncated": u.truncated,
            "failed": u.failed, "completion_tokens": u.completion_tokens, "wall_s": round(wall, 2),
            "s_per_answer": round(wall / n, 3) if n else 0.0,
            "tokens_per_s": round(u.completion_tokens / wall, 2) if wall > 0 else 0.0,
            "examples": [c.text for c in comps[:2]],
            "failures": [{"text": c.text, "error": c.error} for c in comps if not c.ok][:5]}


def compile_times(inputs: Sequence[TaskInput], engines: Sequence[str], cache_dir: Path | None = None) -> list[dict]:
    """Seconds to build each engine for SmolLM2's tokenizer and to compile each task's contract."""
    from genrecsys.llm.grammar import make_engine
    from genrecsys.llm.local import resolve_model
    from genrecsys.llm.templates import load_template

    from transformers import AutoConfig, AutoTokenizer

    from genrecsys.data.movielens import default_cache_dir

    path, _ = resolve_model(None, Path(cache_dir) if cache_dir else default_cache_dir())
    tok, vocab = AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path).vocab_size
    out = []
    for name in engines:
        t0 = time.perf_counter()
        engine = make_engine(name, tok, vocab, [tok.eos_token_id])
        row: dict[str, Any] = {"engine": name, "tokenizer_s": round(time.perf_counter() - t0, 3)}
        for inp in inputs:
            contract = load_template(inp.template).contract_for(inp.rows[0])
            t0 = time.perf_counter()
            engine.compile(contract)
            row[f"{inp.task}_compile_s"] = round(time.perf_counter() - t0, 4)
        out.append(row)
    return out


def ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Constrained vs unconstrained, side by side, per (task, engine, batch)."""
    by = {(r["task"], r["engine"], r["batch"], r["contract"]): r for r in rows}
    out = []
    for (task, engine, batch, on), r in by.items():
        off = by.get((task, "-", batch, False))
        if on and off:
            out.append({"task": task, "engine": engine, "batch": batch,
                        "s_per_answer_ratio": round(r["s_per_answer"] / off["s_per_answer"], 3) if off["s_per_answer"] else None,
                        "tokens_per_s_ratio": round(r["tokens_per_s"] / off["tokens_per_s"], 3) if off["tokens_per_s"] else None})
    return out


_COLUMNS = ["task", "contract", "engine", "batch", "rows", "format_failures", "out_of_vocabulary", "out_of_catalog",
            "reasks", "contract_violations", "truncated", "completion_tokens", "s_per_answer", "tokens_per_s"]


def markdown(rows: Sequence[dict[str, Any]], compiles: Sequence[dict[str, Any]] = ()) -> str:
    """The table as BENCHMARKS.md shows it."""
    head = ["task", "contract", "engine", "batch", "rows", "format fail", "OOV", "out-of-catalog", "re-asks",
            "violations", "truncated", "tokens", "s/answer", "tok/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(("on" if r[c] else "off") if c == "contract" else str(r[c]) for c in _COLUMNS)
                     + " |")
    ratio = ratios(rows)
    if ratio:
        lines += ["", "| task | engine | batch | s/answer on/off | tok/s on/off |", "|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['engine']} | {r['batch']} | {r['s_per_answer_ratio']} | {r['tokens_per_s_ratio']} |"
                  for r in ratio]
    if compiles:
        keys = [k for k in compiles[0] if k != "engine"]
        lines += ["", "| engine | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        lines += ["| " + r["engine"] + " | " + " | ".join(str(r[k]) for k in keys) + " |" for r in compiles]
    return "\n".join(lines) + "\n"
