"""Cached replay: time to answer N already-completed requests from the SQLite cache
(key hashing + lookup + decoding), with a backend that fails the run if it is called.

    python benchmarks/llm_cache_replay.py --n 10000
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


class MustNotBeCalled:
    name, model_id, remote, max_context = "replay-guard", "m", False, None

    def count_tokens(self, messages):
        return 0

    def generate(self, requests, on_result=None):
        raise AssertionError(f"backend called for {len(requests)} requests during a cached replay")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000)
    args = p.parse_args()
    from genrecsys.llm.cache import LLMCache
    from genrecsys.llm.client import EchoBackend
    from genrecsys.llm.job import generate
    from genrecsys.llm.types import Request, SamplingParams

    cache = LLMCache(Path(tempfile.mkdtemp()) / "cache.sqlite")
    reqs = [Request.chat(f"Summarize item {i}: a film about a heist that goes wrong in a small town.",
                         system="You write short titles.", params=SamplingParams(max_tokens=64),
                         template="summarize_item", template_version="1") for i in range(args.n)]
    t0 = time.perf_counter()
    echo = EchoBackend("m")
    echo.name = "replay-guard"
    generate(reqs, echo, cache)
    fill = time.perf_counter() - t0
    t0 = time.perf_counter()
    out, stats = generate(reqs, MustNotBeCalled(), cache)
    replay = time.perf_counter() - t0
    assert stats.total.cache_hits == args.n and stats.total.backend_calls == 0 and all(c.ok for c in out)
    print(f"filled {args.n} answers in {fill:.2f} s; cached replay of {args.n} requests: {replay:.2f} s "
          f"({args.n / replay:,.0f} req/s), backend calls 0")


if __name__ == "__main__":
    main()
