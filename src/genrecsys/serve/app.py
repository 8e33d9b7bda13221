"""The HTTP service (FastAPI): recommendations with explanations, similar items, anonymous
visitors, a conversational recommender, Prometheus metrics, reload, and the web page.

    genrecsys serve runs/sasrec runs/lightgcn --port 8000      # then http://127.0.0.1:8000/

Every ``/v1`` and ``/admin`` route needs the API key when the environment variable named by
``api_key_env`` (default ``GENRECSYS_API_KEY``) is set: ``Authorization: Bearer KEY`` or
``X-API-Key: KEY``, compared in constant time. Bodies over ``max_body_bytes`` get 413 before
any parsing. Errors are JSON ``{"detail": "<one line>"}``: 404 names the unknown user, item
or run, 422 names the offending field.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field, model_validator

from genrecsys.errors import GenrecsysError
from genrecsys.serve.service import LoadedRun, Ranked, Service

log = logging.getLogger("genrecsys.serve")
STATIC = Path(__file__).parent / "static"
MAX_K = 1000  # a larger k is a client bug, not a request (422)
ENDPOINTS = ("/v1/recommend", "/v1/items/{id}/similar", "/v1/items", "/v1/runs", "/v1/chat", "/v1/chat/{id}",
             "/admin/reload",
             "/healthz", "/metrics", "/")


@dataclass(frozen=True)
class ServeConfig:
    runs: dict[str, str]  # name -> run directory
    cache_dir: str | None = None
    root: str | None = None  # reload may point only inside this directory
    max_batch: int = 64  # 1 turns micro-batching off
    max_wait_ms: float = 0.0  # 0: a batch is what queued while the previous one ran (measured best at 1-64 clients)
    max_body_bytes: int = 1 << 20
    api_key_env: str = "GENRECSYS_API_KEY"
    chat_db: str | None = None  # SQLite file of conversations (default: <genrecsys cache>/serve/chat.sqlite)
    llm: Any = None  # LLMConfig for the chat replies (None: the embedded default)
    chat_encoder: str | None = None  # text encoder dir for the chat's item retrieval (None: MiniLM; "none": off)
    redact_leaks: bool = False  # RELAND explanations lose the seed user's items the user never had


class _Metrics:
    """Prometheus collectors of one app (own registry, so apps in one process stay apart)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("genrecsys_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("genrecsys_request_seconds", "request latency", ["endpoint"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))
        self.batch = Histogram("genrecsys_batch_size", "queries per model call", ["run"], registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.model = Gauge("genrecsys_model_info", "served model version (value 1)", ["run", "model", "version"],
                           registry=self.registry)
        self.reloads = Counter("genrecsys_reloads", "reloads", ["run", "outcome"], registry=self.registry)

    def set_models(self, runs: dict[str, LoadedRun]) -> None:
        self.model.clear()
        for name, r in runs.items():
            self.model.labels(name, r.model_name, r.version).set(1)


class RecommendBody(BaseModel):
    users: list[str] | None = Field(None, min_length=1, max_length=1024, description="known users")
    items: list[str] | None = Field(None, min_length=1, max_length=200,
                                    description="an anonymous visitor's items, oldest first")
    k: int = Field(10, ge=1, le=MAX_K)
    run: str | None = None

    @model_validator(mode="after")
    def one_of(self):
        if (self.users is None) == (self.items is None):
            raise ValueError("give exactly one of 'users' and 'items'")
        return self


class ReloadBody(BaseModel):
    run: str | None = Field(None, description="the run to reload (default: all)")
    path: str | None = Field(None, description="a new run directory for it, inside the runs root")


class ChatBody(BaseModel):
    message: str = Field(..., min_length=1, max_length=2000)
    conversation: str | None = Field(None, max_length=64, description="id from an earlier reply")
    user: str | None = Field(None, max_length=200, description="a known user to personalise for")
    k: int = Field(5, ge=1, le=20)
    run: str | None = None


def endpoint_of(path: str) -> str:
    if path.startswith("/v1/items/") and path.endswith("/similar"):
        return "/v1/items/{id}/similar"
    if path.startswith("/v1/chat/"):
        return "/v1/chat/{id}"
    return path if path in ENDPOINTS else "other"


class _Guard:
    """Pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware): API key, body
    size limit, and the request metrics."""

    def __init__(self, app, metrics: _Metrics, api_key: str | None, max_body: int):
        self.app, self.metrics, self.max_body = app, metrics, max_body
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, path = time.perf_counter(), scope["path"]
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if self.api_key is not None and path.startswith(("/v1/", "/admin/")) and not self._authorized(scope):
                return await _reply(send_status, 401, "missing or wrong API key", {"www-authenticate": "Bearer"})
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                return await _reply(send_status, 413, f"body of {int(length)} bytes is over the limit of "
                                                      f"{self.max_body}")
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body, more = bytearray(), True
                while more:  # read it all (bounded) before the app sees it: chunked bodies are counted too
                    message = await receive()
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > self.max_body:
                        return await _reply(send_status, 413, f"body is over the limit of {self.max_body} bytes")
                sent = False

                async def replay():
                    nonlocal sent
                    if not sent:
                        sent = True
                        return {"type": "http.request", "body": bytes(body), "more_body": False}
                    return await receive()

                return await self.app(scope, replay, send_status)
            return await self.app(scope, receive, send_status)
        finally:
            ep = endpoint_of(path)
            self.metrics.requests.labels(ep, str(status["code"])).inc()
            self.metrics.latency.labels(ep).observe(time.perf_counter() - t0)

    def _authorized(self, scope) -> bool:
        given = b""
        for k, v in scope["headers"]:
            if k == b"authorization" and v[:7].lower() == b"bearer ":
                given = v[7:].strip()
            elif k == b"x-api-key":
                given = v.strip()
        return hmac.compare_digest(given, self.api_key)


async def _reply(send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def _ranked(run: LoadedRun, r: Ranked) -> list[dict[str, Any]]:
    return [{"rank": i + 1, **run.describe(int(ix)), "score": float(s)} for i, (ix, s) in enumerate(zip(r.items, r.scores))]


def create_app(cfg: ServeConfig, service: Service | None = None):
    """The FastAPI application over ``cfg``'s runs (or a ready ``service``)."""
    from contextlib import asynccontextmanager

    metrics = _Metrics()

    def observe(run: str, size: int) -> None:
        metrics.batch.labels(run).observe(size)

    svc = service or Service({n: Path(p) for n, p in cfg.runs.items()}, cfg.cache_dir, root=cfg.root,
                             max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms, redact_leaks=cfg.redact_leaks)
    svc.on_batch = svc.on_batch or observe
    metrics.set_models(svc.runs)
    chat_state: dict[str, Any] = {}

    def do_reload(name: str | None = None, path: str | None = None) -> dict[str, str]:
        try:
            versions = svc.reload(name, path)
        except (GenrecsysError, KeyError):
            metrics.reloads.labels(name or "*", "failed").inc()
            raise
        metrics.reloads.labels(name or "*", "ok").inc()
        metrics.set_models(svc.runs)
        return versions

    @asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()

        def on_hup() -> None:  # SIGHUP: reload every run from its directory, in the background
            fut = loop.run_in_executor(None, do_reload)
            fut.add_done_callback(lambda f: f.exception() and log.error("SIGHUP reload failed: %s", f.exception()))

        try:
            loop.add_signal_handler(signal.SIGHUP, on_hup)
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):  # not the main thread / Windows
            pass
        yield
        svc.close()
        if "chat" in chat_state:
            chat_state["chat"].close()

    app = FastAPI(title="genrecsys", version=_version(), lifespan=lifespan,
                  description="Recommendations, explanations and conversation from genrecsys runs.")
    app.state.service, app.state.metrics = svc, metrics

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        if first.get("type") == "json_invalid":  # loc is (body, character offset)
            loc = first.get("loc", ())
            where = f"body (invalid JSON at character {loc[-1] if len(loc) > 1 else '?'}: " \
                    f"{first.get('ctx', {}).get('error', 'not JSON')})"
        return JSONResponse({"detail": f"{where}: {first.get('msg')}", "errors": json.loads(json.dumps(
            errors, default=str))}, status_code=422)

    def run_or_404(name: str | None) -> LoadedRun:
        try:
            return svc.run(name)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None

    def lookup(fn, *args):
        try:
            return fn(*args)
        except GenrecsysError as exc:
            raise HTTPException(404, str(exc)) from None

    async def recommend_user(run: LoadedRun, user: str, k: int) -> dict[str, Any]:
        ranked = await svc.rank(run.name, lookup(run.user_query, user, k))
        why = run.explanations.get(str(user)) if run.explanations else None
        return {"user": str(user), "run": run.name, "version": run.version, "items": _ranked(run, ranked),
                "explanation": why}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "runs": {n: r.version for n, r in svc.runs.items()}}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/runs")
    async def runs() -> dict[str, Any]:
        return {"default": svc.default, "runs": [
            {"name": n, "model": r.model_name, "version": r.version, "users": r.split.n_users, "items": r.n_items,
             "explanations": r.explanations is not None,
             "anonymous": "model" if not r.model.reads_users() else "item-to-item",
             "example_users": [str(u) for u in r.split.user_ids[:20]]} for n, r in svc.runs.items()]}

    @app.get("/v1/recommend")
    async def recommend(user: str = Query(..., min_length=1, max_length=200, description="raw user id"),
                        k: int = Query(10, ge=1, le=MAX_K), run: str | None = Query(None)) -> dict[str, Any]:
        """Top-k unseen items of a known user, with the RELAND explanation when the run has one."""
        return await recommend_user(run_or_404(run), user, k)

    @app.post("/v1/recommend")
    async def recommend_many(body: RecommendBody) -> dict[str, Any]:
        """A batch of known users, or an anonymous visitor given by the items they liked."""
        run = run_or_404(body.run)
        if body.users is not None:
            return {"results": list(await asyncio.gather(*(recommend_user(run, u, body.k) for u in body.users)))}
        ranked = await svc.rank(run.name, lookup(run.visitor_query, body.items, body.k))
        return {"results": [{"user": None, "run": run.name, "version": run.version, "items": _ranked(run, ranked),
                             "explanation": None,
                             "rule": "model" if not run.model.reads_users() else "item-to-item"}]}

    @app.get("/v1/items/{item}/similar")
    async def similar(item: str, k: int = Query(10, ge=1, le=MAX_K), run: str | None = None) -> dict[str, Any]:
        r = run_or_404(run)
        idx = lookup(r.item_index, item)
        ranked = await asyncio.get_running_loop().run_in_executor(svc.executor, r.similar, idx, k)
        return {"item": r.describe(idx), "run": r.name, "items": _ranked(r, ranked)}

    @app.get("/v1/items")
    async def search(q: str = Query("", max_length=200), limit: int = Query(10, ge=1, le=100),
                     run: str | None = None) -> dict[str, Any]:
        """Catalog items whose title contains ``q`` (case-insensitive; prefix matches first)."""
        r = run_or_404(run)
        needle = q.strip().lower()
        titles = [(i, str(t)) for i, t in enumerate(r.titles) if i and needle in str(t).lower()]
        titles.sort(key=lambda it: (not it[1].lower().startswith(needle), -r.popularity[it[0]], it[1]))
        return {"items": [r.describe(i) for i, _ in titles[:limit]]}

    @app.post("/admin/reload")
    async def reload(body: Annotated[ReloadBody | None, Body()] = None) -> dict[str, Any]:
        """Load runs again (or one run from a new directory) and swap them in atomically."""
        body = body or ReloadBody()
        if body.run is not None:
            run_or_404(body.run)
        try:
            versions = await asyncio.get_running_loop().run_in_executor(None, do_reload, body.run, body.path)
        except GenrecsysError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"reloaded": versions}

    def chatbot(run: LoadedRun):
        from genrecsys.serve.chat import Chatbot

        if "chat" not in chat_state:  # built on first use: the LLM and text index are not loaded for plain serving
            from genrecsys.data.movielens import default_cache_dir

            db = cfg.chat_db or str(Path(cfg.cache_dir or default_cache_dir()) / "serve" / "chat.sqlite")
            chat_state["chat"] = Chatbot(svc, db, cfg.llm, cfg.cache_dir, encoder=cfg.chat_encoder)
        return chat_state["chat"]

    @app.post("/v1/chat")
    async def chat(body: ChatBody) -> dict[str, Any]:
        """One turn of the conversational recommender; the conversation persists in SQLite."""
        from genrecsys.serve.chat import ChatError

        run = run_or_404(body.run)
        bot = chatbot(run)
        try:
            return await bot.turn(run.name, body.message, conversation=body.conversation, user=body.user, k=body.k)
        except ChatError as exc:
            raise HTTPException(exc.status, str(exc)) from None

    @app.get("/v1/chat/{conversation}")
    async def chat_history(conversation: str) -> dict[str, Any]:
        """A stored conversation: its run, user and every message with its items."""
        from genrecsys.serve.chat import ChatError

        bot = chatbot(run_or_404(None))
        try:
            return bot.store.get(conversation)
        except ChatError as exc:
            raise HTTPException(exc.status, str(exc)) from None

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    key = os.environ.get(cfg.api_key_env) or None
    guarded = _Guard(app, metrics, key, cfg.max_body_bytes)
    guarded.fastapi = app  # the routes and state, for tests and embedding
    return guarded


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("genrecsys")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0"
