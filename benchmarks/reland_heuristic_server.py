"""A format-following stand-in for a stronger LLM, served over the OpenAI chat API.

Why: with the embedded SmolLM2-135M most RELAND answers ignore the Step 1 / Step 2
format, so a "no gain" result mixes two causes (the model's knowledge, and the format).
No stronger model can run on this offline 2-core machine, so this server answers the
RELAND prompt the way a format-following model with genre knowledge would, using only
what the prompt shows plus the catalog's training-set popularity:

- Step 1: the user's three most frequent genres in the prompt's history (most recent
  items weigh more) and their latest item.
- Step 2: those genres as ``Categories:``, then ``Items:``: the most popular catalog
  items (training interactions only, never valid/test) in those genres that are not in
  the prompt's history, as many as the prompt asks for.

It is NOT an LLM and its numbers are labelled as such; it exercises the exact path a
real OpenAI-compatible backend takes (HTTP, retries, cache, token usage, parser, title
matching, retrieval, fusion), and tells whether well-formed rationales help the fusion.

    python benchmarks/reland_heuristic_server.py --port 8765 &
    python benchmarks/reland.py table2 --models lightgcn --backend openai \
        --base-url http://127.0.0.1:8765/v1 --model genre-heuristic ...
"""
from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

_FENCE = re.compile(r"<<<history [0-9a-f]+>>>\n(.*?)\n<<<end [0-9a-f]+>>>", re.DOTALL)
_LINE = re.compile(r"^\s*\d+\.\s+(.*?)(?:\s+\[([^\]]*)\])?\s*$")
_N_ITEMS = re.compile(r"Items:\s*(\d+)\s+titles")


class Catalog:
    """Display titles, genres and training popularity of a dataset's items."""

    def __init__(self, dataset: str, cache_dir: str | None) -> None:
        from genrecsys.config import DataConfig, ExperimentConfig
        from genrecsys.experiment import load_split
        from genrecsys.reasoning.pool import _categories
        from genrecsys.reasoning.rationale import TitleCatalog

        split = load_split(ExperimentConfig(data=DataConfig(dataset=dataset)), cache_dir)
        titles = TitleCatalog.from_split(split)
        cats = _categories(split)
        pop = np.bincount(split.train.items, minlength=split.n_items + 1)
        order = np.argsort(-pop[1:], kind="stable") + 1
        self.ranked = [(titles.display(int(i)), set(cats.get(int(i), []))) for i in order]

    def answer(self, prompt: str) -> str:
        fence = _FENCE.search(prompt)
        lines = fence.group(1).splitlines() if fence else []
        seen, genres = set(), Counter()
        for rank, line in enumerate(lines):
            m = _LINE.match(line)
            if not m:
                continue
            seen.add(m.group(1).strip())
            for g in (m.group(2) or "").split(","):
                if g.strip():
                    genres[g.strip()] += 1.0 / (1.0 + 0.05 * rank)  # recent items weigh more
        top = [g for g, _ in genres.most_common(3)]
        asked = _N_ITEMS.search(prompt)
        n = int(asked.group(1)) if asked else 10
        picks = [t for t, gs in self.ranked if t not in seen and (not top or gs & set(top))][:n]
        first = _LINE.match(lines[0]) if lines else None
        latest = first.group(1) if first else "nothing yet"
        summary = (f"This user mostly chooses {', '.join(top[:-1])} and {top[-1]} titles, most recently {latest}."
                   if len(top) > 1 else f"This user's taste is centred on {top[0] if top else 'popular'} titles, "
                   f"most recently {latest}.")
        return (f"Step 1: {summary}\nStep 2:\nCategories: {', '.join(top) or 'Drama'}\nItems:\n"
                + "\n".join(f"{k}. {t}" for k, t in enumerate(picks, 1)))


def serve(catalog: Catalog, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            msgs = body.get("messages", [])
            prompt = next((m["content"] for m in reversed(msgs) if m.get("role") == "user"), "")
            text = catalog.answer(prompt)
            data = json.dumps({
                "id": "cmpl-heuristic", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                # whitespace words, not model tokens: this server has no tokenizer
                "usage": {"prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in msgs),
                          "completion_tokens": len(text.split())}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    return httpd


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--cache-dir", default=os.environ.get("GENRECSYS_CACHE"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args(argv)
    httpd = serve(Catalog(args.dataset, args.cache_dir), args.host, args.port)
    print(f"serving {args.dataset} heuristic answers on http://{args.host}:{args.port}/v1", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
