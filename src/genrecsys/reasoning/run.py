"""RELAND end to end for one split: the side-input files a backbone trains with.

:func:`prepare_reland` runs the whole offline phase of the paper (Fig. 2) and writes its
products into ``out_dir``:

1. behaviour encoder -> M (n_users + 1, d): LightGCN fitted here (cached under the cache
   dir by split content + encoder settings) or the user vectors of a finished run;
2. seed users: adaptive (K-means representativeness + importance) or uniform random;
3. the reasoning pool: one CoT (or direct) answer per seed through the LLM cache, so a
   rerun sends nothing to the backend (``pool/``);
4. retrieval: every user gets the nearest seed's rationale (cosine, Eq. 3);
5. the retrieved Step 2 texts, encoded (MiniLM, cached by content) -> ``user_text.npy``
   (U+1, 384); with item features on, ``item_text.npy`` (I+1, 384);
6. ``assignment.parquet``: per user, its seed user, the similarity and both steps (what
   ``genrecsys recommend`` shows as the explanation), and ``reland.json``: the LLM cost
   block and timings.

With ``cfg.rationales`` False only step 5's item side runs (the "+f_item" variant).

>>> # from genrecsys.experiment import train_behaviour_encoder
>>> # inputs = prepare_reland(split, RelandConfig(), LLM(cfg.llm), cache_dir, "runs/x/reland",
>>> #                         train_encoder=train_behaviour_encoder)
>>> # model_params.update(inputs.model_params())   # user_text / item_text for any backbone
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from genrecsys.config import RelandConfig
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError
from genrecsys.files import building_file

if TYPE_CHECKING:
    import pandas as pd

    from genrecsys.llm.client import LLM
    from genrecsys.reasoning.encoder import EncoderConfig

RELAND_DIR = "reland"  # inside a run directory
USER_TEXT, ITEM_TEXT, ASSIGNMENT, POOL_DIR, SUMMARY = (
    "user_text.npy", "item_text.npy", "assignment.parquet", "pool", "reland.json")
TEMPLATES = {"cot": "reland_cot", "direct": "reland_direct"}

# (split, settings) -> (M, the fit result): fits LightGCN. `genrecsys.experiment` passes its
# `train_behaviour_encoder`; this package trains nothing itself (it sits below `train`).
EncoderTrainer = Callable[[SplitData, "EncoderConfig"], tuple[np.ndarray, Any]]


@dataclass
class RelandInputs:
    """What :func:`prepare_reland` wrote (absolute paths; None = not produced)."""

    out_dir: Path
    user_text: Path | None = None
    item_text: Path | None = None
    assignment: Path | None = None
    pool_dir: Path | None = None
    llm: dict[str, Any] | None = None  # llm_metrics(...) + wall time of the pool build
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def model_params(self, relative_to: Path | None = None) -> dict[str, str]:
        """``user_text`` / ``item_text`` for a backbone config; paths relative to
        ``relative_to`` when given (a run directory stays valid after it is moved)."""
        out = {}
        for key in ("user_text", "item_text"):
            path = getattr(self, key)
            if path is not None:
                out[key] = str(path.relative_to(relative_to)) if relative_to is not None else str(path)
        return out


# ----------------------------------------------------------------------------- encoder
def split_fingerprint(split: SplitData) -> str:
    """Content hash of a split's training part and id maps (what the encoder sees)."""
    h = hashlib.sha256()
    for arr in (split.train.indptr, split.train.items, split.valid.indptr, split.valid.items):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    h.update("\n".join(map(str, split.user_ids)).encode())
    h.update("\n".join(map(str, split.item_ids)).encode())
    return h.hexdigest()


def behaviour_matrix(split: SplitData, cfg: RelandConfig, cache_dir: str | Path | None = None,
                     threads: int | None = None,
                     encoder_run: tuple[np.ndarray, SplitData] | None = None,
                     train_encoder: EncoderTrainer | None = None) -> tuple[np.ndarray, str]:
    """M (n_users + 1, d) and where it came from ("cache", "trained" or the run directory).

    With ``cfg.encoder`` a run directory, the caller loads it and passes ``encoder_run``
    = (M, the run's split) (`genrecsys.experiment.user_matrix_from_run`): loading a run is
    the experiment layer's job, above this package. So is fitting LightGCN when no cached
    M fits: ``train_encoder`` (`genrecsys.experiment.train_behaviour_encoder`).

    LightGCN results are cached as ``<cache>/reland/encoder/<key>.npy``: the key covers the
    split's content and the encoder settings, so any change retrains and nothing stale is
    ever reused.
    """
    from genrecsys.reasoning.encoder import EncoderConfig

    if cfg.encoder != "lightgcn":
        run_dir = Path(cfg.encoder).expanduser()
        if not run_dir.is_dir():
            raise GenrecsysError(f"reland.encoder must be 'lightgcn' or a finished run directory; not found: {run_dir}")
        if encoder_run is None:
            raise GenrecsysError(f"reland.encoder is a run directory ({run_dir}): load it with "
                                 "genrecsys.experiment.user_matrix_from_run and pass encoder_run")
        m, run_split = encoder_run
        if run_split.n_users != split.n_users or not np.array_equal(run_split.user_ids, split.user_ids):
            raise GenrecsysError(f"encoder run {run_dir} was trained on another user set ({run_split.n_users} users, "
                                 f"this split has {split.n_users})")
        return m, str(run_dir)
    enc = EncoderConfig(embedding_size=cfg.encoder_embedding_size, epochs=cfg.encoder_epochs,
                        patience=cfg.encoder_patience, threads=threads)
    settings = {k: v for k, v in asdict(enc).items() if k not in ("threads", "progress", "max_seconds")}
    key = hashlib.sha256((split_fingerprint(split) + json.dumps(settings, sort_keys=True)).encode()).hexdigest()[:32]
    path = _cache_root(cache_dir) / "reland" / "encoder" / f"{key}.npy"
    if path.is_file():
        return np.load(path), "cache"
    if train_encoder is None:
        raise GenrecsysError("reland: no LightGCN behaviour encoder is cached for this split and settings; pass "
                             "train_encoder=genrecsys.experiment.train_behaviour_encoder (training is the experiment "
                             "layer's job, above this package) or set reland.encoder to a finished run")
    m, _ = train_encoder(split, enc)
    with building_file(path) as tmp:  # a killed run never leaves half a matrix; concurrent runs don't share one
        np.save(tmp, m)
    return m, "trained"


def _cache_root(cache_dir: str | Path | None) -> Path:
    from genrecsys.data.movielens import default_cache_dir

    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


# ----------------------------------------------------------------------------- pipeline
def seed_users(split: SplitData, m: np.ndarray, cfg: RelandConfig):
    """The seed sample the config asks for (adaptive or uniform)."""
    from genrecsys.reasoning.sampling import SamplingConfig, adaptive_seed_sample, uniform_seed_sample

    lengths = split.train.lengths()
    if cfg.sampling == "random":
        return uniform_seed_sample(lengths, cfg.seed_fraction, seed=cfg.seed, user_matrix=m)
    return adaptive_seed_sample(m, lengths, SamplingConfig(budget=cfg.seed_fraction, n_clusters=cfg.clusters,
                                                           seed=cfg.seed))


def prepare_reland(split: SplitData, cfg: RelandConfig, llm: LLM | None, cache_dir: str | Path | None,
                   out_dir: str | Path, *, threads: int | None = None,
                   encoder_run: tuple[np.ndarray, SplitData] | None = None,
                   train_encoder: EncoderTrainer | None = None) -> RelandInputs:
    """Run RELAND's offline phase for ``split`` and write the side inputs into ``out_dir``.

    ``llm`` answers the seed prompts (None is allowed only when no pool is built: item
    features only, or ``cfg.pool`` reused). Returns the written paths and the ``"llm"``
    block for metrics.json. ``encoder_run`` / ``train_encoder``: see :func:`behaviour_matrix`.
    """
    from genrecsys.reasoning import fusion

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    res = RelandInputs(out)
    t0 = time.perf_counter()
    if cfg.item_features:
        items = fusion.item_text_matrix(split, cfg.text_encoder, cache_dir=_cache_root(cache_dir))
        np.save(out / ITEM_TEXT, items)
        res.item_text = out / ITEM_TEXT
        res.timings["item_text_s"] = time.perf_counter() - t0
    if cfg.rationales:
        _rationales(split, cfg, llm, cache_dir, out, res, threads, encoder_run, train_encoder)
    summary = {"config": asdict(cfg), "llm": res.llm, "timings": res.timings, "notes": res.notes,
               "files": {k: str(v.relative_to(out)) if v is not None else None
                         for k, v in (("user_text", res.user_text), ("item_text", res.item_text),
                                      ("assignment", res.assignment), ("pool", res.pool_dir))}}
    (out / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
    return res


def _rationales(split: SplitData, cfg: RelandConfig, llm: LLM | None, cache_dir: str | Path | None, out: Path,
                res: RelandInputs, threads: int | None,
                encoder_run: tuple[np.ndarray, SplitData] | None = None,
                train_encoder: EncoderTrainer | None = None) -> None:
    """Steps 1-6 of the module docstring for the user side; fills ``res``."""
    from genrecsys.llm.accounting import JobStats
    from genrecsys.reasoning import fusion
    from genrecsys.reasoning.pool import PoolConfig, build_pool, llm_metrics, load_pool
    from genrecsys.reasoning.retrieval import assign_rationales

    t = time.perf_counter()
    m, source = behaviour_matrix(split, cfg, cache_dir, threads, encoder_run, train_encoder)
    res.timings["encoder_s"] = time.perf_counter() - t
    res.notes.append(f"behaviour encoder: {source}")
    if cfg.pool is not None:
        pool = load_pool(cfg.pool)
        if pool.meta.get("n_users") not in (None, split.n_users):
            raise GenrecsysError(f"reasoning pool {cfg.pool} was built for {pool.meta['n_users']} users; "
                                 f"this split has {split.n_users}")
        stats = JobStats()
        res.notes.append(f"reasoning pool reused from {cfg.pool}")
    else:
        if llm is None:
            raise GenrecsysError("building a reasoning pool needs an LLM (or set reland.pool to a saved pool)")
        t = time.perf_counter()
        seeds = seed_users(split, m, cfg)
        res.timings["sampling_s"] = time.perf_counter() - t
        t = time.perf_counter()
        pcfg = PoolConfig(template=TEMPLATES[cfg.prompt], n_items=cfg.n_items, max_history=cfg.max_history,
                          max_tokens=cfg.max_tokens, fresh_items=cfg.fresh_items)
        pool, stats = build_pool(llm, split, m, seeds, pcfg, out_dir=out / POOL_DIR)
        res.timings["pool_s"] = time.perf_counter() - t
        res.pool_dir = out / POOL_DIR
        res.notes.extend(pool.meta.get("notes", []))
    if len(pool) == 0:
        failed = pool.meta.get("failed") or []
        why = f" (every seed failed at the LLM, e.g. {failed[0]['error']})" if failed else ""
        raise GenrecsysError(f"the reasoning pool is empty{why}; rerun to retry the failed seeds")
    t = time.perf_counter()
    assignment = assign_rationales(pool, m, method=cfg.retrieval, field=cfg.text_field)
    res.timings["retrieval_s"] = time.perf_counter() - t
    t = time.perf_counter()
    users = fusion.user_text_matrix(assignment.rationale, cfg.text_encoder, cache_dir=_cache_root(cache_dir))
    res.timings["user_text_s"] = time.perf_counter() - t
    np.save(out / USER_TEXT, users)
    res.user_text = out / USER_TEXT
    assignment_frame(split, pool, assignment).to_parquet(out / ASSIGNMENT, index=False)
    res.assignment = out / ASSIGNMENT
    res.llm = {**llm_metrics(pool, stats, split.n_users), "wall_s": round(stats.wall_s, 3),
               "template": pool.meta.get("template"), "model": pool.meta.get("model"),
               "backend": pool.meta.get("backend")}


def assignment_frame(split: SplitData, pool, assignment) -> pd.DataFrame:
    """One row per user: raw ids of the user and its seed, similarity, the seed's steps."""
    import pandas as pd

    rows = assignment.pool_rows[:, 0]
    frame = pool.frame.iloc[rows]
    return pd.DataFrame({
        "user": split.user_ids[assignment.users].astype(str),
        "user_index": assignment.users,
        "seed_user": split.user_ids[assignment.seed_users[:, 0]].astype(str),
        "seed_index": assignment.seed_users[:, 0],
        "similarity": assignment.similarity[:, 0],
        "step1": frame["step1"].astype(str).to_numpy(),
        "step2": frame["step2"].astype(str).to_numpy(),
    })


# ----------------------------------------------------------------------------- explanations
def explanations(run_dir: str | Path, users: list[str], redact_leaks=None) -> dict[str, dict[str, Any]] | None:
    """Per raw user id: its Step 1 rationale, seed user and similarity, from a RELAND run
    directory (or its first seed-N run); None for a run without rationales.

    ``redact_leaks``: the run's split; items of the seed user's history that the receiving
    user never interacted with are then removed from the rationale (`reasoning.audit`)."""
    import pandas as pd

    d = Path(run_dir)
    path = d / RELAND_DIR / ASSIGNMENT
    if not path.is_file():
        seeds = sorted(d.glob(f"seed-*/{RELAND_DIR}/{ASSIGNMENT}"))
        if not seeds:
            return None
        path = seeds[0]
    frame = pd.read_parquet(path)
    leaked: dict[str, set[int]] = {}
    if redact_leaks is not None:
        from genrecsys.reasoning.audit import leakage, redact
        from genrecsys.reasoning.rationale import TitleCatalog

        catalog = TitleCatalog.from_split(redact_leaks)
        _, leaked = leakage(redact_leaks, frame, catalog)
    frame = frame.set_index("user")
    out = {}
    for u in users:
        if str(u) in frame.index:
            row = frame.loc[str(u)]
            step1, step2 = str(row["step1"]), str(row["step2"])
            if str(u) in leaked:
                names = [catalog.titles[i] for i in leaked[str(u)]] + [catalog.display(i) for i in leaked[str(u)]]
                step1, step2 = redact(step1, names), redact(step2, names)
            out[str(u)] = {"rationale": step1, "recommended": step2, "seed_user": str(row["seed_user"]),
                           "similarity": float(row["similarity"]), "redacted": len(leaked.get(str(u), ()))}
    return out
