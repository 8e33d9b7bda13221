"""`genrecsys serve RUN...` (the HTTP service and web page) and `genrecsys chat RUN` (the
conversational recommender in the terminal)."""
from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path

from genrecsys.cli.args import NON_NEGATIVE, at_least
from genrecsys.errors import GenrecsysError


def run_names(paths: list[str]) -> dict[str, str]:
    """``NAME=DIR`` or ``DIR`` (named after the directory) -> {name: dir}; names are unique."""
    out: dict[str, str] = {}
    for p in paths:
        name, _, d = p.partition("=") if "=" in p else (Path(p.rstrip("/")).name, "", p)
        if not name or name in out:
            raise GenrecsysError(f"serve: run name {name!r} given twice (use NAME=DIR to tell them apart)")
        if not Path(d).is_dir():
            raise GenrecsysError(f"{d}: no such run directory")
        out[name] = d
    return out


def cmd_serve(args: argparse.Namespace, cache_dir: Path) -> int:
    import logging

    import torch
    import uvicorn

    from genrecsys.cli.llm import llm_settings
    from genrecsys.config import LLMConfig, from_dict
    from genrecsys.serve.app import ServeConfig, create_app

    if args.port < 0 or args.port > 65535:
        raise GenrecsysError(f"--port must be 0..65535, got {args.port}")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runs = run_names(args.runs)
    root = args.root or str(Path(next(iter(runs.values()))).resolve().parent)
    cfg = ServeConfig(runs=runs, cache_dir=str(cache_dir), root=root, max_batch=1 if args.no_batching else args.max_batch,
                      max_wait_ms=args.max_wait_ms, max_body_bytes=args.max_body_bytes, api_key_env=args.api_key_env,
                      chat_db=args.chat_db, llm=from_dict(LLMConfig, llm_settings(args, "llm-", {}), "llm"),
                      chat_encoder=args.chat_encoder, redact_leaks=args.redact_leaks)
    app = create_app(cfg)
    import gc

    gc.collect()
    gc.freeze()  # the loaded model, data and libraries never die: keep them out of every later GC pass
    print(f"serving {', '.join(runs)} on http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log)
    return 0


def cmd_chat(args: argparse.Namespace, cache_dir: Path) -> int:
    from genrecsys.cli.llm import llm_settings
    from genrecsys.config import LLMConfig, from_dict
    from genrecsys.data.movielens import default_cache_dir
    from genrecsys.serve.chat import Chatbot
    from genrecsys.serve.service import Service

    runs = run_names([args.run])
    svc = Service({n: Path(d) for n, d in runs.items()}, cache_dir)
    db = args.chat_db or str(Path(cache_dir or default_cache_dir()) / "serve" / "chat.sqlite")
    bot = Chatbot(svc, db, from_dict(LLMConfig, llm_settings(args, "llm-", {}), "llm"), cache_dir,
                  encoder=args.chat_encoder)
    name = next(iter(runs))
    conversation = args.conversation
    print(f"chatting with {name} ({svc.run(name).model_name}); an empty line or Ctrl-D ends. "
          f"Conversations are kept in {db}.")

    async def loop() -> None:
        nonlocal conversation
        while True:
            try:
                message = input("you> ").strip()
            except EOFError:
                break
            if not message:
                break
            r = await bot.turn(name, message, conversation=conversation, user=args.user, k=args.k)
            conversation = r["conversation"]
            print(f"bot> {r['reply']}")
            for i, it in enumerate(r["items"], start=1):
                print(f"     {i}. {it['title'] or it['id']}  ({', '.join(it['genres'])})")
        if conversation:
            print(f"conversation {conversation} (resume with --conversation {conversation})")

    try:
        asyncio.run(loop())
    finally:
        bot.close()
        svc.close()
    return 0


def add_serve_parsers(sub, cache_dir: Callable[[argparse.Namespace], Path]) -> None:
    """Attach `serve` and `chat` to the top-level subparsers."""
    from genrecsys.cli.llm import add_llm_flags

    sp = sub.add_parser("serve", help="HTTP recommendation service with explanations, chat and a web page",
                        description="Serve finished runs over HTTP (FastAPI + uvicorn): GET /v1/recommend, POST "
                                    "/v1/recommend (users or an anonymous visitor's items), GET /v1/items/ID/similar, "
                                    "POST /v1/chat, GET /healthz, GET /metrics (Prometheus), POST /admin/reload (or "
                                    "SIGHUP), the web page at / and the API docs at /docs. Concurrent requests are "
                                    "micro-batched into one model call. Set the environment variable named by "
                                    "--api-key-env to require a key on /v1 and /admin.")
    sp.set_defaults(fn=lambda a: cmd_serve(a, cache_dir(a)))
    sp.add_argument("runs", nargs="+", metavar="RUN", help="run directory, or NAME=DIR; the first is the default")
    sp.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    sp.add_argument("--port", type=at_least(0), default=8000)
    sp.add_argument("--root", help="directory that POST /admin/reload may load new runs from "
                                   "(default: the first run's parent)")
    sp.add_argument("--max-batch", type=at_least(1), default=64, help="queries per model call (default 64)")
    sp.add_argument("--max-wait-ms", type=NON_NEGATIVE, default=0.0,
                    help="how long a first query waits for others to join its batch (default 0: a batch is what "
                         "arrived while the previous one was scored)")
    sp.add_argument("--no-batching", action="store_true", help="one model call per request (for comparisons)")
    sp.add_argument("--max-body-bytes", type=at_least(1), default=1 << 20, help="larger request bodies get 413 (default 1 MiB)")
    sp.add_argument("--api-key-env", default="GENRECSYS_API_KEY",
                    help="environment variable holding the API key (unset: no key needed)")
    sp.add_argument("--threads", type=at_least(1), default=1, help="torch threads for scoring (default 1)")
    sp.add_argument("--chat-db", help="SQLite file of conversations (default: <cache>/serve/chat.sqlite)")
    sp.add_argument("--chat-encoder", help="text encoder dir for the chat's item retrieval (default: embedded "
                                           "MiniLM; 'none' turns text retrieval off)")
    sp.add_argument("--redact-leaks", action="store_true",
                    help="RELAND runs: explanations lose items of the seed user's history that the user never had "
                         "(see `genrecsys audit`)")
    sp.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    sp.add_argument("--access-log", action="store_true", help="log every request (off: it costs throughput)")
    add_llm_flags(sp.add_argument_group("LLM of the chat (default: the embedded local SmolLM2-135M)"), prefix="llm-")

    sp = sub.add_parser("chat", help="talk to the conversational recommender in the terminal",
                        description="The conversational recommender of `genrecsys serve` (POST /v1/chat) in the "
                                    "terminal: name titles you liked, ask for more; every recommended item is a "
                                    "catalog item. Conversations persist in SQLite and can be resumed.")
    sp.set_defaults(fn=lambda a: cmd_chat(a, cache_dir(a)))
    sp.add_argument("run", help="run directory")
    sp.add_argument("--user", help="a known user to personalise for")
    sp.add_argument("--conversation", help="resume this conversation id")
    sp.add_argument("-k", type=at_least(1), default=5, help="items per reply (default 5)")
    sp.add_argument("--chat-db", help="SQLite file of conversations (default: <cache>/serve/chat.sqlite)")
    sp.add_argument("--chat-encoder", help="text encoder dir for item retrieval (default MiniLM; 'none': off)")
    add_llm_flags(sp.add_argument_group("LLM (default: the embedded local SmolLM2-135M)"), prefix="llm-")
