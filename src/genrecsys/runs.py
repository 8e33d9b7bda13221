"""A run directory and what it is built from: a model by registry name, the split a
config describes, and a finished run rebuilt (config, split, model).

These sit below every package that trains or serves (the registry imports the model
class only when it is looked up), so a model that builds on another run -- the LLM
ranker's retriever, semantic IDs from a run's item embeddings -- loads it from here and
never from `genrecsys.experiment`, which trains.

>>> from genrecsys.runs import build_model
>>> # cfg, split, model = load_run("runs/sasrec-ml-100k")
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from genrecsys.config import ExperimentConfig, from_dict
from genrecsys.data.load import make_split
from genrecsys.data.splits import SplitData
from genrecsys.errors import GenrecsysError

__all__ = ["build_model", "load_split", "load_run"]


def build_model(name: str, params: dict[str, Any], split: SplitData):
    from genrecsys.registry import MODELS

    cls = MODELS.get(name)
    config = from_dict(cls.Config, dict(params), f"model_params ({name})")
    return cls(split, config)


def load_split(cfg: ExperimentConfig, cache_dir: str | Path | None = None) -> SplitData:
    from genrecsys.data.load import prepare

    ds = prepare(cfg.data, cache_dir)
    split = make_split(ds, cfg.data.split, cfg.data.ratios, seed=cfg.train.seed)
    if cache_dir is not None:
        split.meta["cache_dir"] = str(cache_dir)  # models find embedded assets and their caches here
    return split


def load_run(run_dir: str | Path, cache_dir: str | Path | None = None, params: dict[str, Any] | None = None,
             weights: bool = True):
    """Rebuild (config, split, model) of a finished run directory. ``params`` override model
    parameters that do not change its weights (e.g. tallrec's ``retriever`` and
    ``candidates``: the trained LLM asked to re-rank another run's top items); the
    returned config carries them. ``weights=False`` builds the model of the run's config
    untrained, which needs only its ``config.yaml``: enough for what does not depend on
    the weights (the tokens an epoch feeds an LLM) of a run kept as evidence without them."""
    import torch

    from genrecsys.config import load_experiment

    d = Path(run_dir)
    needed = "model.pt" if weights else "config.yaml"
    seeds = sorted(p for p in d.glob("seed-*") if (p / needed).is_file())
    if seeds:  # a multi-seed run: its first seed (top-level files, if any, are an earlier single run's)
        d = seeds[0]
    elif not (d / needed).is_file():
        raise GenrecsysError(f"{run_dir}: not a run directory (no {needed})")
    cfg = load_experiment(d / "config.yaml")
    cfg = _resolve_side_inputs(cfg, d)
    if params:
        cfg = replace(cfg, model_params={**cfg.model_params, **params})
    split = load_split(cfg, cache_dir)
    model = build_model(cfg.model, cfg.model_params, split)
    if not weights:
        return cfg, split, model
    saved = torch.load(d / "model.pt", map_location="cpu", weights_only=False)  # GPU-trained runs load anywhere
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return cfg, split, model


def _resolve_side_inputs(cfg: ExperimentConfig, run_dir: Path) -> ExperimentConfig:
    """Relative ``user_text`` / ``item_text`` paths (RELAND runs) point into the run directory.
    A ``codes`` directory (TIGER, GenRec, llmsid) that is no longer where the run was
    trained -- a runs directory copied to another machine or path, kept as evidence -- is
    looked up by its name beside the run: in the run directory or one of its three
    parents, where a benchmark's runs directory keeps its ``codes-*`` next to the rows."""
    params = dict(cfg.model_params)
    for key in ("user_text", "item_text"):
        value = params.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and (run_dir / value).is_file():
            params[key] = str((run_dir / value).resolve())
    codes = params.get("codes")
    if isinstance(codes, str) and codes != "digits" and not Path(codes).is_dir():
        params["codes"] = str(_moved_codes(codes, run_dir))
    return replace(cfg, model_params=params)


def _moved_codes(codes: str, run_dir: Path) -> Path:
    # a directory of that name is enough here: loading it checks that it holds semantic IDs
    # of the run's catalog, and loading the weights that its codebook sizes are the run's
    name = Path(codes).name
    places = [run_dir.resolve(), *run_dir.resolve().parents][:4]
    for place in places:
        if (place / name).is_dir():
            return place / name
    raise GenrecsysError(f"{run_dir}: the run's semantic IDs {codes} are gone and no {name}/ is beside it "
                         f"(looked in {', '.join(str(p) for p in places)})")
