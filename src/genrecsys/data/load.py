"""Resolve a dataset name or path to a `Dataset`, and apply the configured filters."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from genrecsys.config import DataConfig
from genrecsys.data.schema import Dataset
from genrecsys.errors import GenrecsysError

if TYPE_CHECKING:
    from genrecsys.data.splits import SplitData


def _need_path(fmt: str, path: str | None) -> Path:
    if not path:
        raise GenrecsysError(f"dataset format {fmt!r} needs the path of its files: name their directory as the "
                             f"dataset, or set data.path (train: --data-path, data prepare: --path)")
    return Path(path)


def load_movielens_path(path: str | None = None, cache_dir=None) -> Dataset:
    from genrecsys.data.formats import load_movielens

    return load_movielens(_need_path("movielens", path))


def load_amazon_path(path: str | None = None, cache_dir=None) -> Dataset:
    """`path` is the reviews file, or a directory holding one reviews file and
    optionally one meta_*.json(.gz) file."""
    from genrecsys.data.formats import load_amazon

    p = _need_path("amazon", path)
    if p.is_dir():
        metas = sorted(p.glob("meta*.json*"))
        reviews = sorted(f for f in p.glob("*.json*") if f not in metas)
        if len(reviews) != 1:
            raise GenrecsysError(f"{p}: expected exactly one reviews file (*.json or *.json.gz), found {len(reviews)}")
        return load_amazon(reviews[0], metas[0] if metas else None)
    return load_amazon(p)


def load_yelp_path(path: str | None = None, cache_dir=None) -> Dataset:
    from genrecsys.data.formats import load_yelp

    return load_yelp(_need_path("yelp", path))


def load_mind_path(path: str | None = None, cache_dir=None) -> Dataset:
    from genrecsys.data.mind import load_mind

    return load_mind(_need_path("mind", path))


def load_atomic_path(path: str | None = None, cache_dir=None) -> Dataset:
    from genrecsys.data.atomic import load_atomic

    p = _need_path("atomic", path)
    inter = next(p.glob("*.inter"), None)
    if inter is None:
        raise GenrecsysError(f"{p}: no *.inter file (RecBole atomic layout)")
    return load_atomic(p, inter.stem)


def load_dataset(name_or_path: str, path: str | None = None, cache_dir: str | Path | None = None) -> Dataset:
    """A registered name (`ml-100k`; or a format — movielens, amazon, yelp, atomic —
    with `path`) or a directory: a saved genrecsys dataset (interactions.parquet), a MIND
    directory (behaviors.tsv, or train/ dev/ test/ holding it) or a RecBole atomic
    directory (<name>.inter)."""
    from genrecsys.registry import DATASETS

    if name_or_path in DATASETS:
        loader = DATASETS.get(name_or_path)
        return loader(path=path, cache_dir=cache_dir)
    p = Path(path or name_or_path)
    if p.is_dir() and (p / "interactions.parquet").is_file():
        return Dataset.load(p)
    if p.is_dir() and ((p / "behaviors.tsv").is_file() or any(p.glob("*/behaviors.tsv"))):
        from genrecsys.data.mind import load_mind

        return load_mind(p)
    if p.is_dir() and any(p.glob("*.inter")):
        from genrecsys.data.atomic import load_atomic

        return load_atomic(p, next(p.glob("*.inter")).stem)
    if p.exists():
        raise GenrecsysError(f"{p}: not a dataset directory (no interactions.parquet, no *.inter file)")
    raise GenrecsysError(f"unknown dataset {name_or_path!r}: not one of {', '.join(DATASETS.names())} and no such directory")


def prepare(cfg: DataConfig, cache_dir: str | Path | None = None) -> Dataset:
    """Load + implicit conversion + k-core, as the config says."""
    ds = load_dataset(cfg.dataset, cfg.path, cache_dir)
    if cfg.implicit_threshold is not None:
        from genrecsys.data.filters import to_implicit

        ds = to_implicit(ds, cfg.implicit_threshold)
    if cfg.min_user_interactions or cfg.min_item_interactions:
        from genrecsys.data.filters import k_core

        ds = k_core(ds, cfg.min_user_interactions, cfg.min_item_interactions)
    if len(ds.interactions) == 0:
        filtered = cfg.implicit_threshold is not None or cfg.min_user_interactions or cfg.min_item_interactions
        raise GenrecsysError(f"{ds.name}: no interactions left after filtering" if filtered
                             else f"{ds.name}: the dataset has no interactions")
    return ds


def make_split(ds: Dataset, split: str, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> "SplitData":
    """The named split of a prepared dataset. It lives here, above `data.splits` and
    `data.impressions`, so that neither imports the other to dispatch."""
    from genrecsys.data.impressions import impression_split
    from genrecsys.data.splits import leave_one_out, ratio_split

    if split == "loo":
        return leave_one_out(ds)
    if split == "ratio":
        return ratio_split(ds, ratios)
    if split == "random_ratio":
        return ratio_split(ds, ratios, shuffle=True, seed=seed)
    if split == "impressions":
        return impression_split(ds)
    raise GenrecsysError(f"unknown split {split!r}; choose one of: loo, ratio, random_ratio, impressions")
