"""Semantic IDs for generative retrieval (TIGER): every catalog item gets a short code of
coarse-to-fine tokens quantised from a vector that describes it, so similar items share a
code prefix and a decoder that writes codes can generalise across items.

    vectors  ->  quantize (residual k-means or RQ-VAE, `genrecsys.generative.quantize`)
             ->  dedup level (items sharing a code get 0, 1, 2, ...)  ->  unique codes

Item vectors come from the config's ``source``:

- ``text``: the item's text (`semantic_texts`: title, genres, year, abstract) through a
  sentence encoder, by default the embedded all-MiniLM-L6-v2 (cached vectors);
- ``cf``: the item embedding table of a trained run (``from_run``, e.g. a SASRec run);
- ``both``: the two, each row L2-normalised, side by side.

A build is written to a directory: ``codes.parquet`` (item, item_index, title, c0..cL) and
``stats.json`` (diagnostics, config, sizes, dataset, input fingerprint). The fingerprint
hashes the vectors, the catalog and the config, so a build with the same inputs finds its
directory and reuses it instead of training again.

>>> # split = load_split(ExperimentConfig(data=DataConfig("ml-100k")))
>>> # sids = build_semantic_ids(split, SemanticIDConfig(quantize=QuantizeConfig(quantizer="rqvae")))
>>> # sids.codes[1]             # Toy Story's code, e.g. [3, 17, 5, 0]
>>> # print(format_stats(sids.stats))
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrecsys.errors import GenrecsysError
from genrecsys.files import building_dir, exclusive
from genrecsys.generative.quantize import QuantizeConfig, quantize

if TYPE_CHECKING:
    from genrecsys.data.splits import SplitData

SOURCES = ("text", "cf", "both")
CODES_FILE, STATS_FILE = "codes.parquet", "stats.json"
FORMAT_VERSION = 1  # part of the fingerprint: bump when the same inputs would give other codes


@dataclass(frozen=True)
class SemanticIDConfig:
    """Where the item vectors come from, and how they are quantised."""

    source: str = "text"  # text | cf | both
    from_run: str | None = None  # run directory whose item embeddings are the cf vectors
    text_encoder: str | None = None  # sentence-transformers directory; None = the embedded MiniLM
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise GenrecsysError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source != "text" and not self.from_run:
            raise GenrecsysError(f"source {self.source!r} needs a trained run (from_run / --from-run)")
        if self.source == "text" and self.from_run:
            raise GenrecsysError("from_run is read only with source cf or both")


@dataclass
class SemanticIDs:
    codes: np.ndarray  # (I+1, levels+1) int64, row 0 = padding (zeros); codes[i, l] in [0, sizes[l])
    sizes: tuple[int, ...]  # codebook size per level, last = dedup level size
    item_ids: np.ndarray  # (I+1,) raw item ids as str, row 0 "" — identifies the catalog
    dataset: str  # split.dataset.name
    stats: dict  # diagnostics (see `genrecsys.generative.quantize.quantize`)
    titles: np.ndarray | None = None  # (I+1,) item titles, row 0 ""; for people reading codes
    fingerprint: str = ""  # of the inputs the codes were built from
    directory: Path | None = None  # where they are stored
    reused: bool = False  # True: `build_semantic_ids` found them built already

    def index(self, raw_id: str) -> int:
        """Row of a raw item id; unknown ids are a one-line error."""
        hits = np.flatnonzero(self.item_ids == str(raw_id))
        if not len(hits) or hits[0] == 0:
            where = f"{self.directory}: " if self.directory else ""
            raise GenrecsysError(f"{where}no item {raw_id!r} among the {len(self.item_ids) - 1} items "
                                 f"of {self.dataset}")
        return int(hits[0])


# ----------------------------------------------------------------------------- item vectors
def semantic_texts(split: SplitData) -> list[str]:
    """The text encoded for each item row of `split` (I+1 strings, row 0 ""):
    `genrecsys.reasoning.fusion.item_texts` (title, "Genres: ...") followed by
    "Year: ..." and the ``abstract`` / ``description`` when the item table has them.
    An item with no text at all is "item <raw id>", so it still gets a vector of its own.

    ML-100K item 1: "Toy Story. Genres: Animation, Children's, Comedy. Year: 1995".
    """
    from genrecsys.reasoning.fusion import item_texts

    base = item_texts(split)
    table = split.dataset.items.drop_duplicates("item").set_index("item").reindex(split.item_ids[1:])
    extra = [(col, label) for col, label in (("year", "Year: "), ("abstract", ""), ("description", ""))
             if col in table]
    cells = [[_text(v) for v in table[col].tolist()] for col, _ in extra]
    out = [""]
    for row, (raw, text) in enumerate(zip(split.item_ids[1:], base[1:])):
        parts = [text] if text else []
        parts += [label + values[row] for (_, label), values in zip(extra, cells) if values[row]]
        out.append(". ".join(parts) if parts else f"item {raw}")
    return out


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a year read as 1995.0
    return str(value).strip()


def text_vectors(split: SplitData, model_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None) -> np.ndarray:
    """(I, H) sentence vectors of `semantic_texts` (cached by `encode_texts`)."""
    from genrecsys.reasoning.fusion import encode_texts

    return encode_texts(semantic_texts(split)[1:], model_dir, 64, cache_dir)


def cf_vectors(model, split: SplitData) -> np.ndarray:
    """(I, d) rows 1..I of a trained model's item embedding table ``model.item_emb.weight``."""
    weight = getattr(getattr(model, "item_emb", None), "weight", None)
    if weight is None:
        raise GenrecsysError(f"{type(model).__name__} has no item embedding table (model.item_emb.weight); "
                             "cf vectors need an ID-embedding model such as sasrec, gru4rec or bpr")
    table = weight.detach().cpu().numpy()  # (I+1, d), some models keep extra rows (a mask token) after I
    if table.ndim != 2 or len(table) < split.n_items + 1:
        raise GenrecsysError(f"{type(model).__name__}: item_emb has shape {tuple(table.shape)}, "
                             f"expected at least {split.n_items + 1} rows")
    return np.ascontiguousarray(table[1:split.n_items + 1], dtype=np.float32)


def run_vectors(run_dir: str | Path, split: SplitData, cache_dir: str | Path | None = None) -> np.ndarray:
    """`cf_vectors` of a finished run directory, which must be on `split`'s catalog."""
    from genrecsys.runs import load_run  # rebuilds the model as `genrecsys evaluate` does

    _, run_split, model = load_run(run_dir, cache_dir)
    if run_split.dataset.name != split.dataset.name or not np.array_equal(run_split.item_ids, split.item_ids):
        raise GenrecsysError(f"{run_dir}: the run was trained on {run_split.dataset.name!r} ({run_split.n_items} "
                             f"items), not on this {split.dataset.name!r} catalog ({split.n_items} items)")
    return cf_vectors(model, split)


def item_vectors(split: SplitData, config: SemanticIDConfig, cache_dir: str | Path | None = None) -> np.ndarray:
    """(I, D) float32 vectors of the config's source, row i-1 = item i."""
    if config.source == "text":
        return text_vectors(split, config.text_encoder, cache_dir)
    cf = run_vectors(config.from_run, split, cache_dir)
    if config.source == "cf":
        return cf
    text = text_vectors(split, config.text_encoder, cache_dir)
    # Unit rows first: otherwise whichever source has the larger norms decides the codes.
    return np.hstack([_unit_rows(text), _unit_rows(cf)])  # (I, H + d)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def fingerprint(vectors: np.ndarray, config: SemanticIDConfig, split: SplitData) -> str:
    """Hash of what determines the codes: the vectors' bytes, the catalog, the source and the
    quantizer config (seed included). The run / encoder paths are not in it: the vectors are."""
    h = hashlib.sha256()
    about = {"format": FORMAT_VERSION, "source": config.source, "quantize": asdict(config.quantize),
             "dataset": split.dataset.name, "shape": list(vectors.shape)}
    h.update(json.dumps(about, sort_keys=True).encode())
    h.update("\n".join(split.item_ids.tolist()).encode())
    h.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- build
def build_semantic_ids(split: SplitData, config: SemanticIDConfig | None = None,
                       cache_dir: str | Path | None = None, out_dir: str | Path | None = None) -> SemanticIDs:
    """Semantic IDs of `split`'s catalog, written to `out_dir` (None: a directory under the
    cache named by the input fingerprint). A directory that already holds codes of the same
    fingerprint is read back instead (``reused=True``); one that holds semantic IDs of other
    inputs is replaced, one that holds anything else is never touched.

    An `out_dir` is locked while it is built (a second process gets `genrecsys.files.Busy`
    at once); the cache directory is not: processes that build the same inputs at once
    compute the same codes, and the first to publish them wins.
    """
    c = config or SemanticIDConfig()
    t0 = time.perf_counter()
    vectors = item_vectors(split, c, cache_dir)  # (I, D)
    vector_seconds = time.perf_counter() - t0
    key = fingerprint(vectors, c, split)

    def build(target: Path, replace_existing: bool) -> SemanticIDs:
        codes, stats = quantize(vectors, c.quantize)  # (I, levels + 1)
        stats = {"dataset": split.dataset.name, "source": c.source, **stats, "vector_seconds": vector_seconds}
        sids = SemanticIDs(codes=np.vstack([np.zeros((1, codes.shape[1]), np.int64), codes]),
                           sizes=tuple(stats["sizes"]), item_ids=np.asarray(split.item_ids, dtype=str),
                           dataset=split.dataset.name, stats=stats, titles=_titles(split), fingerprint=key)
        return save_semantic_ids(sids, target, c, replace_existing=replace_existing)

    if out_dir is None:
        target = _default_dir(split.dataset.name, key, cache_dir)
        # replace only a damaged entry; otherwise a concurrent builder's identical copy is kept
        return _reusable(target, key, split) or build(target, replace_existing=target.exists())
    target = Path(out_dir)
    with exclusive(target, "building semantic IDs into"):
        done = _reusable(target, key, split)
        if done is not None:
            return done
        _check_replaceable(target)
        return build(target, replace_existing=True)


def _default_dir(dataset: str, key: str, cache_dir: str | Path | None) -> Path:
    from genrecsys.data.movielens import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "semantic_ids" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', dataset)}-{key}"


def _reusable(target: Path, key: str, split: SplitData) -> SemanticIDs | None:
    try:
        if json.loads((target / STATS_FILE).read_text()).get("fingerprint") != key:
            return None
        return replace(load_semantic_ids(target, split), reused=True)
    except (OSError, ValueError, AttributeError, GenrecsysError):  # absent, other inputs or damaged: build afresh
        return None


def _check_replaceable(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise GenrecsysError(f"{target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / STATS_FILE).is_file():
        raise GenrecsysError(f"{target}: exists and holds no semantic IDs ({STATS_FILE}); not replacing it")


def _titles(split: SplitData) -> np.ndarray:
    items = split.dataset.items.drop_duplicates("item").set_index("item")
    if "title" not in items:
        return np.asarray([""] * len(split.item_ids), dtype=object)
    titles = items["title"].reindex(split.item_ids[1:]).fillna("").astype(str).tolist()
    return np.asarray([""] + titles, dtype=object)


# ----------------------------------------------------------------------------- disk
def save_semantic_ids(sids: SemanticIDs, directory: str | Path, config: SemanticIDConfig | None = None, *,
                      replace_existing: bool = True) -> SemanticIDs:
    """Write ``codes.parquet`` + ``stats.json`` to `directory` in one rename (a directory
    already there is replaced, or with ``replace_existing=False`` kept); returns `sids`
    with ``directory`` set."""
    import pandas as pd

    target = Path(directory)
    frame = pd.DataFrame({"item": sids.item_ids[1:], "item_index": np.arange(1, len(sids.item_ids))})
    if sids.titles is not None:
        frame["title"] = sids.titles[1:]
    for level in range(len(sids.sizes)):
        frame[f"c{level}"] = sids.codes[1:, level]
    meta = {"format": FORMAT_VERSION, "dataset": sids.dataset, "sizes": list(sids.sizes),
            "fingerprint": sids.fingerprint, "config": asdict(config) if config is not None else None,
            "stats": sids.stats}
    with building_dir(target, replace=replace_existing) as tmp:
        frame.to_parquet(tmp / CODES_FILE, index=False)
        (tmp / STATS_FILE).write_text(json.dumps(meta, indent=2))
    return replace(sids, directory=target)


def load_semantic_ids(directory: str | Path, split: SplitData | None = None) -> SemanticIDs:
    """Read a directory written by `build_semantic_ids`. With `split`, the codes must be of
    its dataset and catalog (same raw item ids in the same rows). Every problem is a
    one-line `GenrecsysError` naming the directory."""
    import pandas as pd

    d = Path(directory)
    if not d.is_dir():
        raise GenrecsysError(f"{d}: no such semantic IDs directory")
    missing = [name for name in (CODES_FILE, STATS_FILE) if not (d / name).is_file()]
    if missing:
        raise GenrecsysError(f"{d}: not a semantic IDs directory (no {' or '.join(missing)})")
    try:
        meta = json.loads((d / STATS_FILE).read_text())
        frame = pd.read_parquet(d / CODES_FILE).sort_values("item_index")
        sizes = tuple(int(s) for s in meta["sizes"])
        columns = [f"c{level}" for level in range(len(sizes))]
        codes = frame[columns].to_numpy(dtype=np.int64)  # (I, L)
        item_ids = np.concatenate([[""], frame["item"].astype(str).to_numpy()]).astype(str)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = (str(exc).splitlines() or [""])[0]
        raise GenrecsysError(f"{d}: unreadable semantic IDs ({type(exc).__name__} {reason})") from None
    if not np.array_equal(frame["item_index"].to_numpy(), np.arange(1, len(frame) + 1)):
        raise GenrecsysError(f"{d}: {CODES_FILE} does not hold item indices 1..{len(frame)} once each")
    if len(codes) and ((codes < 0) | (codes >= np.asarray(sizes))).any():
        raise GenrecsysError(f"{d}: {CODES_FILE} holds codes outside the codebook sizes {list(sizes)}")
    titles = None
    if "title" in frame:
        titles = np.asarray([""] + frame["title"].fillna("").astype(str).tolist(), dtype=object)
    sids = SemanticIDs(codes=np.vstack([np.zeros((1, len(sizes)), np.int64), codes]), sizes=sizes, item_ids=item_ids,
                       dataset=str(meta.get("dataset", "")), stats=meta.get("stats") or {}, titles=titles,
                       fingerprint=str(meta.get("fingerprint", "")), directory=d)
    if split is not None:
        check_catalog(sids, split)
    return sids


def check_catalog(sids: SemanticIDs, split: SplitData) -> None:
    """One-line error unless `sids` number exactly `split`'s items."""
    where = sids.directory or "semantic IDs"
    if sids.dataset != split.dataset.name:
        raise GenrecsysError(f"{where}: semantic IDs of dataset {sids.dataset!r}, not of {split.dataset.name!r}")
    if not np.array_equal(sids.item_ids, np.asarray(split.item_ids, dtype=str)):
        raise GenrecsysError(f"{where}: semantic IDs of another {sids.dataset!r} catalog ({len(sids.item_ids) - 1} "
                             f"items, the split has {split.n_items} or the same items in other rows)")


# ----------------------------------------------------------------------------- report
def format_stats(stats: dict) -> str:
    """The diagnostics table that `genrecsys semantic-ids build` and `show` print."""
    s = stats
    sizes = s.get("sizes") or []
    where = f" of {s['dataset']}" if s.get("dataset") else ""
    source = f" on {s['source']} vectors" if s.get("source") else ""
    balanced = " (balanced)" if s.get("balanced") else ""
    lines = [f"semantic IDs{where}: {s.get('quantizer')}{balanced}{source} ({s.get('n_items')} items, "
             f"{s.get('dim')}-d), {s.get('levels')} levels x {s.get('codebook_size')} codes "
             f"+ dedup level of {sizes[-1] if sizes else '?'}",
             f"{'level':>5}  {'usage':>7}  {'perplexity':>10}  {'recon error':>11}"]
    by_level = s.get("reconstruction_error_by_level") or []
    for level, (usage, ppl) in enumerate(zip(s.get("usage", []), s.get("perplexity", []))):
        err = f"{by_level[level]:11.4f}" if level < len(by_level) else f"{'':>11}"
        lines.append(f"{level:>5}  {usage:>7.1%}  {ppl:>10.1f}  {err}")
    lines.append(f"collisions before dedup: {s.get('collision_rate', 0):.1%} of items share their code with "
                 f"another item; largest bucket {s.get('largest_bucket')}")
    if "reconstruction_error" in s:
        lines.append(f"reconstruction error {s['reconstruction_error']:.4f} (mean squared distance to the item "
                     f"vector; the vectors' variance is {s.get('vector_variance', float('nan')):.4f})")
    if s.get("quantizer") == "rqvae":
        lines.append(f"rqvae: {s.get('epochs')} epochs, {s.get('dead_code_resets')} dead codes reset, final "
                     f"losses: reconstruction {s.get('final_recon_loss', float('nan')):.4f}, quantisation "
                     f"{s.get('final_quant_loss', float('nan')):.4f}")
    vec = f" (+ {s['vector_seconds']:.1f} s for the vectors)" if "vector_seconds" in s else ""
    lines.append(f"quantised in {s.get('seconds', float('nan')):.1f} s{vec}")
    return "\n".join(lines) + "\n"
