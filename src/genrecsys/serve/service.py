"""Trained runs held in memory for the HTTP service: scoring with micro-batching,
explanations, similar items, anonymous visitors, and atomic reload.

A *query* is one user's request for a top-K; concurrent queries to one run are gathered
into one ``model.score`` call (`MicroBatcher`: at most ``max_batch`` queries, waiting at
most ``max_wait_ms`` for more once the first arrives). The model runs on one worker thread
per service, so a batch being scored is never interrupted and the next batch forms while it
runs.

Anonymous visitors (a list of item ids instead of a user) are scored directly by models whose
score reads only the sequence (SASRec, GRU4Rec, BERT4Rec, TIGER without user tokens, Pop:
``model.reads_users()`` is False). For the others (MF, graph models, HSTU, GenRec, RELAND
runs) the documented rule is *item-to-item*: an item's score is the sum of its cosine
similarities to the visitor's items over the model's item embeddings (``item_emb``), or
training popularity when the model has no item table.

Reload loads the new run completely before swapping it in with one assignment; a batch
already being scored finishes on the model it started with, and a run that fails to load
leaves the old one serving.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrecsys.errors import GenrecsysError

log = logging.getLogger("genrecsys.serve")


@dataclass(frozen=True)
class Query:
    user: int | None  # user index; None: an anonymous visitor described by ``seq``
    seq: np.ndarray  # (L,) item indices, oldest first: the items to condition on and to exclude
    k: int


@dataclass(frozen=True)
class Ranked:
    items: np.ndarray  # (k,) item indices, best first
    scores: np.ndarray  # (k,)


@dataclass
class LoadedRun:
    """One run ready to answer: model in eval mode, histories, titles, explanations."""

    name: str
    path: Path
    model: Any
    split: Any
    model_name: str
    version: str  # model name + the first 12 hex digits of model.pt's sha256
    max_len: int
    loaded_at: float
    titles: np.ndarray  # (I+1,) str, "" for index 0
    genres: np.ndarray  # (I+1,) str
    popularity: np.ndarray  # (I+1,) training interactions per item
    history: Any  # Part: every known interaction of each user (train + valid + test), in time order
    explanations: dict[str, dict[str, Any]] | None
    _vectors: np.ndarray | None = field(default=None, repr=False)
    _vectors_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def n_items(self) -> int:
        return self.split.n_items

    def user_index(self, raw: str) -> int:
        return self.split.user_index(raw)

    def item_index(self, raw: str) -> int:
        lookup = self.split.meta.get("_item_lookup")
        if lookup is None:
            lookup = self.split.meta["_item_lookup"] = {str(r): i for i, r in enumerate(self.split.item_ids) if i}
        idx = lookup.get(str(raw))
        if idx is None:
            raise GenrecsysError(f"unknown item {raw!r} (run {self.name} has {self.n_items} items)")
        return idx

    def describe(self, idx: int) -> dict[str, Any]:
        return {"id": str(self.split.item_ids[idx]), "title": str(self.titles[idx]),
                "genres": [g for g in str(self.genres[idx]).split("|") if g]}

    def user_query(self, raw: str, k: int) -> Query:
        u = self.user_index(raw)
        return Query(u, np.asarray(self.history.of(u), dtype=np.int64), k)

    def visitor_query(self, items: Sequence[str], k: int) -> Query:
        return Query(None, np.asarray([self.item_index(i) for i in items], dtype=np.int64), k)

    # ------------------------------------------------------------------ scoring
    def score(self, queries: Sequence[Query]) -> list[Ranked]:
        """Top-k unseen items of each query, in one model call for the users and the
        visitors the model can score directly."""
        import torch

        direct = [i for i, q in enumerate(queries) if q.user is not None or not self.model.reads_users()]
        rule = sorted(set(range(len(queries))) - set(direct))
        scores = torch.empty(len(queries), self.n_items + 1)  # (B, I+1)
        if direct:
            users = np.array([queries[i].user if queries[i].user is not None else 0 for i in direct], dtype=np.int64)
            seqs = np.zeros((len(direct), self.max_len), dtype=np.int64)  # (B, L) left-padded
            for row, i in enumerate(direct):
                tail = queries[i].seq[-self.max_len:]
                if len(tail):
                    seqs[row, -len(tail):] = tail
            with torch.no_grad():
                scores[direct] = self.model.score(torch.as_tensor(users), torch.as_tensor(seqs)).float().cpu()
        for i in rule:
            scores[i] = torch.as_tensor(self._item_to_item(queries[i].seq))
        scores[:, 0] = -torch.inf
        for row, q in enumerate(queries):
            if len(q.seq):
                scores[row, torch.as_tensor(q.seq)] = -torch.inf
        k_max = min(max(q.k for q in queries), self.n_items)
        top = torch.topk(scores, k_max, dim=1)
        out = []
        for row, q in enumerate(queries):
            v, ix = top.values[row, :q.k], top.indices[row, :q.k]
            keep = torch.isfinite(v)
            out.append(Ranked(ix[keep].numpy(), v[keep].numpy()))
        return out

    def _item_to_item(self, seq: np.ndarray) -> np.ndarray:
        vectors = self.cf_vectors()
        if vectors is None or not len(seq):
            return self.popularity.astype(np.float32)
        return (vectors @ vectors[seq].sum(axis=0)).astype(np.float32)  # (I+1,) sum of cosines

    def cf_vectors(self) -> np.ndarray | None:
        """(I+1, d) unit rows of the model's item embedding table (row 0 zero), or None."""
        if self._vectors is None:
            with self._vectors_lock:
                if self._vectors is None:
                    from genrecsys.generative.semantic_ids import cf_vectors

                    try:
                        v = cf_vectors(self.model, self.split)
                    except GenrecsysError:
                        v = np.zeros((self.n_items, 0), dtype=np.float32)
                    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) if v.shape[1] else v
                    self._vectors = np.vstack([np.zeros((1, v.shape[1]), dtype=np.float32), v])
        return self._vectors if self._vectors.shape[1] else None

    def similar(self, idx: int, k: int) -> Ranked:
        """Nearest items by cosine over the model's item embeddings (co-occurrence in the
        training interactions when the model has none)."""
        vectors = self.cf_vectors()
        if vectors is not None:
            sims = vectors @ vectors[idx]
        else:
            m = self.split.train_matrix()
            sims = np.asarray((m.T @ m[:, idx]).todense()).ravel().astype(np.float32)
        sims[[0, idx]] = -np.inf
        k = min(k, self.n_items - 1)
        top = np.argsort(-sims, kind="stable")[:k]
        top = top[np.isfinite(sims[top])]
        return Ranked(top, sims[top])


def load(name: str, path: str | Path, cache_dir: str | Path | None = None, redact_leaks: bool = False) -> LoadedRun:
    """Load a finished run directory (or the first seed of a multi-seed one) for serving;
    ``redact_leaks``: explanations lose the seed user's items this user never had
    (`genrecsys.reasoning.audit`)."""
    from genrecsys.data.splits import concat_parts
    from genrecsys.experiment import load_run
    from genrecsys.reasoning.run import explanations

    path = Path(path)
    cfg, split, model = load_run(path, cache_dir)
    model.on_eval_start()
    weights = path / "model.pt" if (path / "model.pt").is_file() else min(path.glob("seed-*/model.pt"))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    items = split.dataset.items.set_index("item") if "item" in split.dataset.items else None

    def column(col: str) -> np.ndarray:
        if items is None or col not in items.columns:
            return np.array([""] * (split.n_items + 1), dtype=object)
        values = items[col].reindex(split.item_ids[1:]).fillna("").astype(str).to_numpy()
        return np.concatenate([[""], values]).astype(object)

    popularity = np.bincount(split.train.items, minlength=split.n_items + 1).astype(np.float32)
    why = explanations(path, [str(u) for u in split.user_ids], redact_leaks=split if redact_leaks else None)
    return LoadedRun(name=name, path=path, model=model, split=split, model_name=cfg.model,
                     version=f"{cfg.model}-{digest}", max_len=cfg.data.max_seq_len, loaded_at=time.time(),
                     titles=column("title"),
                     genres=column("genres") if items is not None and "genres" in items.columns else column("category"), popularity=popularity,
                     history=concat_parts(split.history("test"), split.test), explanations=why)


class MicroBatcher:
    """Gathers concurrent calls into batches for ``fn(list_of_inputs) -> list_of_outputs``,
    run on ``executor``: at most ``max_batch`` inputs, waiting at most ``max_wait_ms`` for
    more after the first. ``max_batch=1`` turns batching off (one call per request)."""

    def __init__(self, fn: Callable[[list[Any]], list[Any]], executor: ThreadPoolExecutor, *, max_batch: int = 64,
                 max_wait_ms: float = 2.0, on_batch: Callable[[int], None] | None = None):
        self.fn, self.executor = fn, executor
        self.max_batch, self.max_wait = max(1, max_batch), max(0.0, max_wait_ms) / 1000
        self.on_batch = on_batch
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    async def submit(self, item: Any) -> Any:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                while len(batch) < self.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                left = deadline - loop.time()
                if len(batch) >= self.max_batch or left <= 0:
                    break
                await asyncio.sleep(min(left, 0.0005))
            inputs = [item for item, _ in batch]
            try:
                results = await loop.run_in_executor(self.executor, self.fn, inputs)
            except Exception as exc:  # noqa: BLE001 - every waiter of the batch gets the error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for (_, fut), result in zip(batch, results):
                if not fut.done():
                    fut.set_result(result)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


class Service:
    """Named runs, one micro-batcher each, and reload. Names are the run directories' names
    unless given (``name=path``)."""

    def __init__(self, runs: dict[str, Path], cache_dir: str | Path | None = None, *, root: str | Path | None = None,
                 max_batch: int = 64, max_wait_ms: float = 0.0, on_batch: Callable[[str, int], None] | None = None,
                 redact_leaks: bool = False):
        if not runs:
            raise GenrecsysError("serve: give at least one run directory")
        self.cache_dir = cache_dir
        self.root = Path(root).resolve() if root else None
        self.max_batch, self.max_wait_ms = max_batch, max_wait_ms
        self.on_batch = on_batch
        self.redact_leaks = redact_leaks
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="genrecsys-model")
        self.runs: dict[str, LoadedRun] = {}
        self.batchers: dict[str, MicroBatcher] = {}
        self._reload_lock = threading.Lock()
        for name, path in runs.items():
            self.runs[name] = load(name, path, cache_dir, redact_leaks)
            log.info("loaded run %s from %s (%s)", name, path, self.runs[name].version)
        self.default = next(iter(runs))

    def run(self, name: str | None) -> LoadedRun:
        run = self.runs.get(name or self.default)
        if run is None:
            raise KeyError(f"unknown run {name!r}; serving {', '.join(self.runs)}")
        return run

    def _batcher(self, name: str) -> MicroBatcher:
        b = self.batchers.get(name)
        if b is None:
            # the batch reads the run when it starts: a reload mid-way changes the next batch only
            b = self.batchers[name] = MicroBatcher(lambda qs, n=name: self.runs[n].score(qs), self.executor,
                                                   max_batch=self.max_batch, max_wait_ms=self.max_wait_ms,
                                                   on_batch=(lambda size, n=name: self.on_batch(n, size))
                                                   if self.on_batch else None)
        return b

    async def rank(self, name: str, query: Query) -> Ranked:
        return await self._batcher(name).submit(query)

    def resolve(self, path: str | Path) -> Path:
        """A reload path, which must stay inside ``root`` (the served runs' directory)."""
        p = Path(path)
        if self.root is None:
            raise GenrecsysError("reload to a new path needs the service started with a runs root (--root)")
        full = (p if p.is_absolute() else self.root / p).resolve()
        if not full.is_relative_to(self.root):
            raise GenrecsysError(f"{path}: outside the runs root {self.root}")
        return full

    def reload(self, name: str | None = None, path: str | Path | None = None) -> dict[str, str]:
        """Load ``name`` (all runs when None) again, from ``path`` if given; swap on success.
        Returns name -> new version; raises GenrecsysError (old runs untouched) on failure."""
        with self._reload_lock:
            names = [name] if name else list(self.runs)
            for n in names:
                self.run(n)  # KeyError for an unknown name
            target = {n: (self.resolve(path) if path is not None else self.runs[n].path) for n in names}
            fresh = {}
            for n, p in target.items():
                try:
                    fresh[n] = load(n, p, self.cache_dir, self.redact_leaks)
                except Exception as exc:
                    log.error("reload of %s from %s failed, still serving %s: %s", n, p, self.runs[n].version, exc)
                    raise GenrecsysError(f"reload of {n} from {p} failed ({type(exc).__name__}: {exc}); "
                                         f"still serving {self.runs[n].version}") from exc
            for n, r in fresh.items():
                self.runs[n] = r
                log.info("reloaded run %s from %s (%s)", n, r.path, r.version)
            return {n: r.version for n, r in fresh.items()}

    def close(self) -> None:
        for b in self.batchers.values():
            b.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
