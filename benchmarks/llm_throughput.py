"""Tokens/s of the local transformers backend at batch sizes 1, 8, 32 and of llama.cpp
single-stream (llama-cpp-python) on the same GGUF and the same prompts, in one run.

Greedy decoding, no cache (every prompt is generated), one process, ``--threads`` torch /
llama.cpp threads. tokens/s = generated tokens (EOS included) / wall seconds of the batch
loop, model loading excluded. Engines run in A B C D D C B A order and each engine's two
passes are summed, so drifting machine load does not favour one engine.

    python benchmarks/llm_throughput.py --threads 2 --out benchmarks/results/llm_throughput.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TITLES = ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat", "Twelve Monkeys", "Babe", "Dead Man Walking",
          "Richard III", "Seven", "Usual Suspects", "Mighty Aphrodite", "Postino", "Mr. Holland's Opus", "French Twist",
          "From Dusk Till Dawn", "White Balloon", "Antonia's Line", "Angels and Insects", "Muppet Treasure Island",
          "Braveheart", "Taxi Driver", "Rumble in the Bronx", "Birdcage", "Brothers McMullen", "Bad Boys", "Apollo 13",
          "Batman Forever", "Belle de jour", "Crimson Tide", "Crumb", "Desperado"]


def prompts(n: int):
    from genrecsys.llm.types import Request, SamplingParams

    return lambda max_tokens: [Request.chat(f"Describe the movie {t} in two sentences for a recommender system.",
                                            params=SamplingParams(max_tokens=max_tokens)) for t in (TITLES * 4)[:n]]


def bench_local(batch_size: int, reqs, threads: int, cache_dir: str | None) -> dict:
    from genrecsys.config import LLMConfig
    from genrecsys.llm.backends import make_backend

    b = make_backend(LLMConfig(batch_size=batch_size, threads=threads), cache_dir)
    b.generate(reqs[:1])  # warm-up (first-call allocations), not timed
    t0 = time.perf_counter()
    out = b.generate(reqs)
    wall = time.perf_counter() - t0
    toks = sum(c.completion_tokens for c in out)
    assert all(c.ok for c in out), [c.error for c in out if not c.ok][:1]
    return {"engine": f"transformers batch {batch_size}", "tokens": toks, "wall_s": round(wall, 2),
            "tokens_per_s": round(toks / wall, 2), "model": b.model_id}


def bench_llamacpp(reqs, threads: int, cache_dir: str | None) -> dict:
    import llama_cpp

    from genrecsys.config import LLMConfig
    from genrecsys.llm.backends import make_backend

    b = make_backend(LLMConfig(backend="llamacpp", threads=threads), cache_dir)
    b.generate(reqs[:1])
    t0 = time.perf_counter()
    out = b.generate(reqs)
    wall = time.perf_counter() - t0
    toks = sum(c.completion_tokens for c in out)
    return {"engine": "llama.cpp single stream", "tokens": toks, "wall_s": round(wall, 2),
            "tokens_per_s": round(toks / wall, 2), "model": b.model_id, "version": llama_cpp.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=None, help="where the embedded model is unpacked/converted")
    p.add_argument("--repeats", type=int, default=2, help="passes over the engines, alternating order")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import torch
    import transformers

    reqs = prompts(args.prompts)(args.max_tokens)
    engines: list[tuple[str, object]] = []
    try:
        import llama_cpp  # noqa: F401

        engines.append(("llama.cpp single stream", lambda: bench_llamacpp(reqs, args.threads, args.cache_dir)))
    except ImportError:
        print("llama-cpp-python not installed: no llama.cpp baseline", file=sys.stderr)
    for bs in args.batch_sizes:
        engines.append((f"transformers batch {bs}", lambda bs=bs: bench_local(bs, reqs, args.threads, args.cache_dir)))
    # Run the engines forward then backward (A B C D D C B A) and average each engine's two
    # measurements, so a drift in machine load does not favour whichever ran first.
    runs: dict[str, list[dict]] = {name: [] for name, _ in engines}
    for order in range(args.repeats):
        for name, fn in (engines if order % 2 == 0 else engines[::-1]):
            r = fn()
            runs[name].append(r)
            print(json.dumps(r), flush=True)
    rows = []
    for name, rs in runs.items():
        toks, wall = sum(r["tokens"] for r in rs), sum(r["wall_s"] for r in rs)
        rows.append({**rs[0], "tokens": toks, "wall_s": round(wall, 2), "tokens_per_s": round(toks / wall, 2),
                     "repeats": len(rs)})
    ll = next((r for r in rows if r["engine"].startswith("llama.cpp")), None)
    base = ll["tokens_per_s"] if ll else None
    print(f"\n{args.prompts} prompts, max_tokens {args.max_tokens}, greedy, {args.threads} threads, "
          f"torch {torch.__version__}, transformers {transformers.__version__}, {platform.processor() or platform.machine()}\n")
    print("| engine | tokens | wall s | tokens/s | vs llama.cpp |\n|---|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['tokens_per_s'] / base:.2f}×" if base else "n/a"
        print(f"| {r['engine']} | {r['tokens']} | {r['wall_s']} | {r['tokens_per_s']} | {ratio} |")
    if args.out:
        meta = {"prompts": args.prompts, "max_tokens": args.max_tokens, "threads": args.threads,
                "torch": torch.__version__, "transformers": transformers.__version__,
                "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
