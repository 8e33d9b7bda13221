"""Structured generation on ML-100K prompts with the embedded SmolLM2: each task with and
without its output contract, then a batch-size sweep of both grammar engines.

    python benchmarks/llm_structured.py                      # NS UP NG CoT, 32 prompts, batch 8
    python benchmarks/llm_structured.py --rows 8 --speed-batches 1 8   # smaller

Logic lives in genrecsys.stages.structured; this file parses arguments and prints.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from genrecsys.config import LLMConfig
from genrecsys.stages.structured import TASKS, compile_times, markdown, measure, ratios, task_inputs
from genrecsys.eval.report import run_environment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--rows", type=int, default=32, help="prompts per task (default 32)")
    p.add_argument("--batch", type=int, default=8, help="batch size of the quality table (default 8)")
    p.add_argument("--engine", default="xgrammar", help="grammar engine of the quality table")
    p.add_argument("--speed-task", default="UP", choices=TASKS, help="task of the batch-size sweep (default UP)")
    p.add_argument("--speed-batches", type=int, nargs="*", default=[1, 8, 32])
    p.add_argument("--speed-engines", nargs="*", default=["xgrammar", "llguidance"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", help="genrecsys cache (ML-100K, the converted model)")
    p.add_argument("--out", default="benchmarks/results/llm_structured.json")
    a = p.parse_args()
    cache = Path(a.cache_dir) if a.cache_dir else None
    inputs = {i.task: i for i in task_inputs(sorted(set(a.tasks) | {a.speed_task}, key=TASKS.index), a.rows, cache)}
    rows = []
    for task in a.tasks:
        for on in (False, True):
            cfg = LLMConfig(threads=a.threads, batch_size=a.batch, grammar_engine=a.engine)
            rows.append(measure(inputs[task], cfg, on, cache))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "examples"}), flush=True)
    speed = []
    for batch in a.speed_batches:
        speed.append(measure(inputs[a.speed_task], LLMConfig(threads=a.threads, batch_size=batch), False, cache))
        for engine in a.speed_engines:
            cfg = LLMConfig(threads=a.threads, batch_size=batch, grammar_engine=engine)
            speed.append(measure(inputs[a.speed_task], cfg, True, cache))
            print(json.dumps({k: v for k, v in speed[-1].items() if k != "examples"}), flush=True)
    compiles = compile_times(list(inputs.values()), a.speed_engines, cache)
    result = {"quality": rows, "speed": speed, "ratios": ratios(rows + speed), "compile": compiles,
              **run_environment()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(markdown(rows) + "\n" + markdown(speed, compiles))


if __name__ == "__main__":
    main()
