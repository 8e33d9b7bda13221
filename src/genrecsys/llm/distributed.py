"""Bulk LLM and embedding jobs on Ray Data: the local code path, spread over actors.

Nothing here is a scheduler of our own. Ray Data cuts the rows into batches and feeds
them to a pool of actors; each actor holds one backend (or one sentence encoder) and runs
the very same :func:`genrecsys.llm.job.generate` a local job runs, against the same
SQLite cache. Cache hits, re-asks, parsing, recorded failures and accounting are
therefore identical to a local run; only the batches run in parallel.

::

    comps, stats = generate_on_ray(requests, LLMConfig(backend="openai", base_url=...),
                                   "cache.sqlite", num_workers=4)

Results come back in input order.

**One cache for the whole cluster.** The SQLite file lives on the driver's machine and is
opened by one Ray actor pinned to the driver's node (:class:`CacheActor`); the LLM actors,
on whatever node Ray put them, read and write it through that actor (:class:`RemoteCache`),
one committed transaction per answer, before they ask the next question. So a prompt is
paid once across the cluster, a worker (or a node) killed mid-job loses only the answers
it had not received yet, and a rerun, or Ray's own retry of the lost batch, asks only what
was never committed. We chose this over answers sent back with their batch (committed by
the driver alone): there, every answer of a batch in flight dies with its actor and is
paid again. A shared database on a network file system was not an option: SQLite's WAL
mode does not work over NFS. The price is one round trip to the cache actor per answer,
milliseconds against an LLM call.

Ray is an optional dependency (``pip install "genrecsys[ray]"``); importing this module
does not import it.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from genrecsys.errors import GenrecsysError
from genrecsys.llm.accounting import JobStats, PriceTable
from genrecsys.llm.types import Completion, Request

if TYPE_CHECKING:
    from genrecsys.config import LLMConfig
    from genrecsys.llm.backends import BackendFactory
    from genrecsys.llm.job import Parser


def ensure_ray(address: str | None = None) -> None:
    """Connect to Ray once per process: reuse a running session, join ``address``, or start
    a local Ray (``address`` None). Raises GenrecsysError when Ray is not installed."""
    try:
        import ray
        import ray.data  # noqa: F401 - fail here, with the install hint, when only ray core is there
    except ImportError:
        raise GenrecsysError('the ray executor needs Ray Data: pip install "genrecsys[ray]" '
                             '(or pip install "ray[data]>=2.10")') from None
    if ray.is_initialized():
        return
    # log_to_driver=False: actor stdout (model-loading chatter) stays in Ray's log files;
    # an actor's exception still reaches the caller, with its traceback.
    ray.init(address=address, include_dashboard=False, log_to_driver=False)


def _dumps(obj: Any) -> bytes:
    # cloudpickle, not pickle: parsers are often lambdas and parsed values may be instances
    # of classes built at run time; both must cross the process boundary.
    from ray import cloudpickle

    return cloudpickle.dumps(obj)


def _loads(blob: bytes) -> Any:
    from ray import cloudpickle

    return cloudpickle.loads(blob)


class CacheActor:
    """The job's answer cache: one SQLite file, opened by this actor only, on the driver's
    node. Calls run one at a time (a Ray actor's default), so SQLite sees a single writer."""

    def __init__(self, path: str) -> None:
        from genrecsys.llm.cache import LLMCache

        self.cache = LLMCache(path)

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        return self.cache.get_many(keys)

    def put_many(self, rows: list[tuple[str, Completion, dict[str, Any]]]) -> int:
        return self.cache.put_many(rows)


class RemoteCache:
    """What :func:`genrecsys.llm.job.generate` needs of a cache (``get_many``, ``put_many``),
    answered by a :class:`CacheActor` wherever it runs; ``put_many`` returns once committed."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def get_many(self, keys) -> dict[str, Completion]:
        import ray

        return ray.get(self.actor.get_many.remote(list(keys)))

    def put_many(self, rows: list[tuple[str, Completion, dict[str, Any]]]) -> int:
        import ray

        return ray.get(self.actor.put_many.remote(rows))


def start_cache_actor(cache_path: str | Path) -> Any:
    """A :class:`CacheActor` on the calling process's node (the SQLite file is a local file
    there), reserving no CPU."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0, scheduling_strategy=here)(CacheActor).remote(str(cache_path))
    ray.get(actor.get_many.remote([]))  # open (and check) the file now: a bad path fails here, once
    return actor


class _GenerateActor:
    """One Ray actor: a backend and a handle on the job's cache actor, built once; each call
    is one local job."""

    def __init__(self, backend_factory: BackendFactory, cache_actor: Any, parser: Parser | None, max_reasks: int,
                 prices: PriceTable):
        self.backend = backend_factory()
        self.cache = RemoteCache(cache_actor)
        self.parser = parser
        self.max_reasks = max_reasks
        self.prices = prices

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        from genrecsys.llm.job import generate

        # A dataset row is a group of identical requests (see _groups), so a prompt that
        # occurs twice in the job is deduplicated inside one generate call, as locally.
        groups: list[list[tuple[int, Request | Completion]]] = [_loads(b) for b in batch["group"]]
        flat = [row for g in groups for _, row in g]
        comps, stats = generate(flat, self.backend, self.cache, parser=self.parser, max_reasks=self.max_reasks,
                                prices=self.prices)
        out, pos = [], 0
        for g in groups:
            out.append(_dumps([(i, comps[pos + j]) for j, (i, _) in enumerate(g)]))
            pos += len(g)
        # The batch's stats ride on its first row; the driver sums them.
        return {"out": out, "stats": [_dumps(stats)] + [b""] * (len(groups) - 1)}


def _groups(requests: Sequence[Request | Completion]) -> list[list[tuple[int, Request | Completion]]]:
    """Rows grouped by what determines the answer (the cache key without backend and model,
    which are the same for the whole job), in order of first appearance."""
    by_key: dict[str, list[tuple[int, Request | Completion]]] = {}
    for i, r in enumerate(requests):
        key = r.cache_key("", "") if isinstance(r, Request) else f"row:{i}"  # failed upstream: alone
        by_key.setdefault(key, []).append((i, r))
    return list(by_key.values())


def generate_on_ray(requests: Sequence[Request | Completion], llm_cfg: LLMConfig, cache_path: str | Path,
                    parser: Parser | None = None, num_workers: int | None = None, batch_size: int | None = None, *,
                    backend_factory: BackendFactory | None = None, cache_dir: str | Path | None = None,
                    prices: PriceTable | None = None, num_cpus_per_worker: float | None = None,
                    progress: bool = False) -> tuple[list[Completion], JobStats]:
    """:func:`genrecsys.llm.job.generate` over a pool of Ray actors; same results, same order.

    Each of ``num_workers`` actors (default ``llm_cfg.ray_workers``, each reserving
    ``llm_cfg.ray_cpus_per_worker`` CPUs unless ``num_cpus_per_worker`` says) builds its backend once
    with ``backend_factory`` (default: ``make_backend(llm_cfg, cache_dir)``; it must be
    picklable) and reads and writes the SQLite cache at ``cache_path``, a file on the
    driver's machine, through one cache actor there; batches of ``batch_size``
    prompts (default ``llm_cfg.ray_batch_size``) are answered by ``job.generate``. The
    returned stats are the batches' stats summed, with ``wall_s`` the driver's elapsed time.
    Joins ``llm_cfg.ray_address`` or starts a local Ray if none is running.
    """
    from genrecsys.llm.backends import make_backend

    t0 = time.perf_counter()
    num_workers = num_workers or llm_cfg.ray_workers
    batch_size = batch_size or llm_cfg.ray_batch_size
    prices = prices or PriceTable.from_dict(llm_cfg.prices)
    num_cpus_per_worker = num_cpus_per_worker or llm_cfg.ray_cpus_per_worker
    factory = backend_factory or partial(make_backend, llm_cfg, cache_dir)
    stats = JobStats()
    if not requests:
        return [], stats
    ensure_ray(llm_cfg.ray_address)
    import ray.data

    groups = _groups(requests)
    # Batches count groups; a group is usually one row, so this is about `batch_size` prompts.
    n_batches = math.ceil(len(groups) / batch_size)
    cache_actor = start_cache_actor(cache_path)
    ds = ray.data.from_items([{"group": _dumps(g)} for g in groups], override_num_blocks=n_batches)
    # Ray Data's default scheduling (DataContext.scheduling_strategy, "SPREAD") puts the
    # pool's actors on as many nodes as can hold them.
    ds = ds.map_batches(_GenerateActor, batch_size=batch_size, batch_format="numpy",
                        fn_constructor_kwargs=dict(backend_factory=factory, cache_actor=cache_actor, parser=parser,
                                                   max_reasks=llm_cfg.max_reasks, prices=prices),
                        compute=ray.data.ActorPoolStrategy(size=min(num_workers, n_batches)),
                        num_cpus=num_cpus_per_worker)
    final: list[Completion | None] = [None] * len(requests)
    try:
        with _progress_bars(progress):
            for row in ds.iter_rows():
                for i, comp in _loads(row["out"]):
                    final[i] = comp
                if row["stats"]:
                    part: JobStats = _loads(row["stats"])
                    stats.merge(part)
    finally:
        ray.kill(cache_actor)  # every answer it was sent is committed: put_many returned first
    missing = [i for i, c in enumerate(final) if c is None]
    if missing:  # a broken invariant, not a bad row: never hand back a short or shifted list
        raise GenrecsysError(f"Ray job lost {len(missing)} row(s), first {missing[0]}")
    stats.wall_s = time.perf_counter() - t0  # the job's elapsed time, not the actors' sum
    return final, stats  # type: ignore[return-value]


class _EmbedActor:
    """One Ray actor holding a sentence-transformers model."""

    def __init__(self, model_dir: str, encode_batch_size: int):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.model = SentenceTransformer(model_dir, device="cpu")
        self.encode_batch_size = encode_batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.model.encode(texts, batch_size=self.encode_batch_size, convert_to_numpy=True,
                                    show_progress_bar=False)  # (B, H)
        return {"index": batch["index"], "vector": np.asarray(vectors, dtype=np.float32)}


def embed_on_ray(texts: Sequence[str], model_dir: str | Path, *, num_workers: int = 2, batch_size: int = 256,
                 encode_batch_size: int = 64, address: str | None = None, num_cpus_per_worker: float = 1.0,
                 progress: bool = False) -> np.ndarray:
    """(N,) texts -> (N, H) float32 sentence embeddings, in input order, from a pool of
    ``num_workers`` Ray actors each holding the model at ``model_dir`` (a path every worker
    can read). Agrees with a local ``SentenceTransformer.encode`` to float tolerance.

    :func:`genrecsys.reasoning.fusion.encode_texts` with ``executor="ray"`` calls this and
    keeps its on-disk vector cache in front of it.
    """
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    ensure_ray(address)
    import ray.data

    n_batches = math.ceil(len(texts) / batch_size)
    ds = ray.data.from_items([{"index": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=n_batches)
    ds = ds.map_batches(_EmbedActor, batch_size=batch_size, batch_format="numpy",
                        fn_constructor_kwargs=dict(model_dir=str(model_dir), encode_batch_size=encode_batch_size),
                        compute=ray.data.ActorPoolStrategy(size=min(num_workers, n_batches)),
                        num_cpus=num_cpus_per_worker)
    out: np.ndarray | None = None
    with _progress_bars(progress):
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            vectors = np.asarray(batch["vector"].tolist() if batch["vector"].dtype == object else batch["vector"],
                                 dtype=np.float32)  # (B, H)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)  # (N, H)
            out[batch["index"]] = vectors
    assert out is not None
    return np.ascontiguousarray(out)


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Ray Data's progress bars on or off for one job, the setting restored after."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    before = ctx.enable_progress_bars
    ctx.enable_progress_bars = enabled
    try:
        yield
    finally:
        ctx.enable_progress_bars = before
