"""Typed configuration: one dataclass per component, YAML files load into them.

Unknown keys are errors (a typo must not silently fall back to a default).

>>> cfg = from_dict(TrainConfig, {"lr": 0.01, "epochs": 3})
>>> cfg.lr, cfg.epochs
(0.01, 3)
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from genrecsys.errors import GenrecsysError

T = TypeVar("T")

# train.precision's values, the one list the CLI and the benchmarks offer too
TRAIN_PRECISIONS = ("float32", "bfloat16")
_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass
class DataConfig:
    dataset: str = "ml-100k"
    path: str | None = None  # a user-given directory or file for the dataset
    split: str = "loo"  # loo | ratio | random_ratio | impressions (along a logged impression log, MIND)
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    implicit_threshold: float | None = None  # keep ratings >= threshold; None keeps all
    min_user_interactions: int = 0  # k-core on users (0 = off)
    min_item_interactions: int = 0
    max_seq_len: int = 50

    def __post_init__(self) -> None:
        if self.split not in ("loo", "ratio", "random_ratio", "impressions"):
            raise GenrecsysError(f"data.split must be loo, ratio, random_ratio or impressions, got {self.split!r}")
        if len(self.ratios) != 3 or abs(sum(self.ratios) - 1.0) > 1e-6 or min(self.ratios) < 0:
            raise GenrecsysError(f"data.ratios must be three non-negative numbers summing to 1, got {self.ratios}")
        if self.max_seq_len < 1:
            raise GenrecsysError("data.max_seq_len must be >= 1")


@dataclass
class TrainConfig:
    epochs: int = 300
    batch_size: int | None = None  # None: the model's own default
    lr: float | None = None  # None: the model's own default
    weight_decay: float | None = None
    patience: int = 10  # validations without improvement before stopping
    eval_every: int = 1
    metric: str | None = None  # model selection metric on validation; None: ndcg@10 (full ranking), auc (impressions)
    seed: int = 2020
    device: str = "cpu"
    threads: int | None = None  # torch threads; None leaves torch's default
    max_seconds: float | None = None  # wall-clock guard on training
    progress: bool = True
    pretrain_epochs: int | None = None  # epochs of the model's pretraining objective first; None: its default
    # learning rate over training: constant, or decayed to 0 at `epochs` (cosine | linear);
    # warmup_steps: linear ramp from 0 over the first optimizer steps (train.loop.lr_factor)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    nproc: int = 1  # data-parallel processes (PyTorch DDP, genrecsys.train.distributed); 1 = this process
    # Warm start: a finished run directory (multi-seed: its seed-<seed> run) whose weights
    # start this one; parameters the run lacks (a RELAND fusion layer) keep their initial
    # values. The starting weights are validated first and stay the selected model unless an
    # epoch beats them on validation (genrecsys.train.loop.fit), so a warm-started model is
    # never below its start on validation.
    init_from: str | None = None
    # Also checkpoint every this many optimizer steps inside an epoch (0: at epoch ends only),
    # so a run whose epoch takes an hour (an LLM fine-tuned on CPU) resumes mid-epoch with the
    # result it would have had uninterrupted.
    checkpoint_steps: int = 0
    # bfloat16: each training step's forward pass and loss run under bfloat16 autocast
    # (torch.autocast on the train device: a GPU, or a CPU with AVX512-BF16 / AMX, where
    # llmsid trains ~1.8x faster, BENCHMARKS.md). Weights, optimizer state and every
    # evaluation stay float32, so validation and test scores are the exact ones.
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.precision not in TRAIN_PRECISIONS:
            raise GenrecsysError(f"train.precision must be one of {', '.join(TRAIN_PRECISIONS)}, got {self.precision!r}")
        if self.checkpoint_steps < 0:
            raise GenrecsysError(f"train.checkpoint_steps must be >= 0, got {self.checkpoint_steps}")
        if self.checkpoint_steps and self.nproc > 1:
            raise GenrecsysError("train.checkpoint_steps needs train.nproc=1 (data-parallel runs checkpoint at epoch ends)")
        if self.epochs < 0 or self.patience < 1 or self.eval_every < 1:
            raise GenrecsysError("train.epochs >= 0, train.patience >= 1 and train.eval_every >= 1 are required")
        if self.lr_schedule not in ("constant", "cosine", "linear"):
            raise GenrecsysError(f"train.lr_schedule must be constant, cosine or linear, got {self.lr_schedule!r}")
        if self.warmup_steps < 0:
            raise GenrecsysError("train.warmup_steps must be >= 0")
        if self.nproc < 1:
            raise GenrecsysError(f"train.nproc must be >= 1, got {self.nproc}")
        if self.pretrain_epochs is not None and self.pretrain_epochs < 0:
            raise GenrecsysError("train.pretrain_epochs must be >= 0")


@dataclass
class ImpressionConfig:
    """Impression protocol (genrecsys.data.impressions, genrecsys.eval.impressions).

    Logged impressions (split 'impressions') are used as they are; otherwise each
    validation/test target gets `negatives` sampled items the user never interacted with.
    """

    negatives: int = 24  # constructed: non-clicked items per target (MIND has ~24 per click, GENRE Table 1)
    sampler: str = "uniform"  # constructed: uniform | popularity (proportional to training counts)
    seed: int = 0  # constructed: fixed across models and training seeds, so all are scored on one set
    new_user_history: int = 5  # users with fewer history items are "new" (GENRE §3.4)
    batch_impressions: int = 256

    def __post_init__(self) -> None:
        if self.negatives < 1 or self.new_user_history < 0 or self.batch_impressions < 1:
            raise GenrecsysError("eval.impressions: negatives >= 1, new_user_history >= 0, batch_impressions >= 1")
        if self.sampler not in ("uniform", "popularity"):
            raise GenrecsysError(f"eval.impressions.sampler must be uniform or popularity, got {self.sampler!r}")


@dataclass
class EvalConfig:
    ks: tuple[int, ...] = (1, 5, 10, 20)
    mask_seen: bool = True  # mask training (and, at test time, validation) items
    batch_users: int = 1024
    protocol: str | None = None  # full | impressions; None: the model's own (impressions for news/CTR models)
    impressions: ImpressionConfig = field(default_factory=ImpressionConfig)
    # Full ranking also reports a long-tail slice (longtail_hit@k, longtail_ndcg@k,
    # longtail_users): targets whose item has at most this many training interactions,
    # where sparse ID embeddings are weakest; None turns the slice off.
    longtail_max_train: int | None = 5
    # Full ranking also writes beyond.json and a report.md section: coverage, Gini, novelty,
    # diversity, popularity and calibration of the test top-10 lists, and NDCG per user group
    # (genrecsys.eval.holistic; one more pass over the test users).
    beyond: bool = True

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise GenrecsysError("eval.ks must be a non-empty list of positive integers")
        lt = self.longtail_max_train
        if lt is not None and (isinstance(lt, bool) or not isinstance(lt, int) or lt < 0):
            raise GenrecsysError(f"eval.longtail_max_train must be an integer >= 0 or null, got {lt!r}")
        if self.protocol not in (None, "full", "impressions"):
            raise GenrecsysError(f"eval.protocol must be full or impressions, got {self.protocol!r}")


@dataclass
class LLMConfig:
    """Which LLM answers, and how. Remote (non-loopback) servers must be opted into."""

    backend: str = "local"  # local | openai | llamacpp
    model: str | None = None  # local: HF dir or .gguf file (None: embedded SmolLM2); openai: model name
    # local: a finished tallrec/llmsid run (genrecsys.models.llmrec) whose LoRA adapter is
    # applied to `model` (the same base it was trained on), so templates run on the LLM
    # that has seen the catalog; answers are cached apart from the base model's
    adapter: str | None = None
    base_url: str = "http://127.0.0.1:8000/v1"  # openai backend
    api_key_env: str = "OPENAI_API_KEY"  # the env variable the key is read from, never the key itself
    allow_remote: bool = False
    concurrency: int = 8  # openai: requests in flight
    batch_size: int = 8  # local: prompts per forward batch
    timeout_s: float = 120.0
    max_attempts: int = 5  # one retry layer: attempts per request for transient errors
    device: str = "cpu"  # local: cpu | cuda | auto
    dtype: str = "auto"  # local: auto (float16 on cuda, float32 on cpu) | float32 | bfloat16 | float16
    threads: int | None = None  # local: torch threads
    max_context: int | None = None  # None: the model's own limit
    max_reasks: int = 1  # extra attempts when the answer does not parse
    cache: str | None = None  # SQLite file; None: <cache dir>/llm/cache.sqlite
    templates_dir: str | None = None  # user templates, override built-ins by name
    prices: dict[str, Any] = field(default_factory=dict)  # model -> {prompt, completion} USD per 1M tokens
    executor: str = "local"  # local: this process | ray: Ray Data actors (pip install genrecsys[ray])
    ray_address: str | None = None  # ray: cluster to join ("auto", "ray://host:10001"); None starts a local Ray
    ray_workers: int = 2  # ray: actors, each holding one backend
    ray_batch_size: int = 64  # ray: prompts per actor call (one job.generate each)
    ray_cpus_per_worker: float = 1.0  # ray: CPUs reserved per actor (an HTTP backend needs far less than 1)
    contracts: bool = True  # decode under the templates' output contracts where the backend can (--no-contract)
    grammar_engine: str = "xgrammar"  # local: xgrammar | llguidance (see genrecsys.llm.grammar)
    structured_outputs: str = "response_format"  # openai: response_format (OpenAI) | vllm (structured_outputs) | off

    def __post_init__(self) -> None:
        if self.backend not in ("local", "openai", "llamacpp"):
            raise GenrecsysError(f"llm.backend must be local, openai or llamacpp, got {self.backend!r}")
        if self.executor not in ("local", "ray"):
            raise GenrecsysError(f"llm.executor must be local or ray, got {self.executor!r}")
        if self.ray_workers < 1 or self.ray_batch_size < 1 or self.ray_cpus_per_worker <= 0:
            raise GenrecsysError("llm.ray_workers and llm.ray_batch_size must be >= 1, llm.ray_cpus_per_worker > 0")
        if self.concurrency < 1 or self.batch_size < 1 or self.max_attempts < 1 or self.max_reasks < 0:
            raise GenrecsysError("llm.concurrency, llm.batch_size, llm.max_attempts must be >= 1, llm.max_reasks >= 0")
        if self.timeout_s <= 0:
            raise GenrecsysError("llm.timeout_s must be > 0")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise GenrecsysError(f"llm.dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.grammar_engine not in ("xgrammar", "llguidance"):
            raise GenrecsysError(f"llm.grammar_engine must be xgrammar or llguidance, got {self.grammar_engine!r}")
        if self.structured_outputs not in ("response_format", "vllm", "off"):
            raise GenrecsysError("llm.structured_outputs must be response_format, vllm or off, "
                                 f"got {self.structured_outputs!r}")


@dataclass
class RelandConfig:
    """RELAND side inputs for a backbone (genrecsys.reasoning.run): rationales retrieved
    from an LLM reasoning pool, and/or item text features ("+f_item").

    ``rationales: false`` with ``item_features: true`` is the paper's "+f_item" variant
    (no LLM at all). Budgets follow SamplingConfig: a float is a fraction of the users,
    an int a count. Defaults are the authors' (10% seeds, clusters = 5% of users,
    LightGCN encoder with embedding 64 and patience 10, Step 2 text encoded).
    """

    rationales: bool = True  # False: no LLM, no pool (only item features, if on)
    item_features: bool = False  # also feed item text (title + genres) to the backbone
    seed_fraction: int | float = 0.1  # seed users (float: fraction of users, int: count)
    clusters: int | float = 0.05  # K-means clusters for adaptive sampling (float: fraction, int: count)
    sampling: str = "adaptive"  # adaptive | random (the "w/o a.s." ablation)
    prompt: str = "cot"  # cot | direct (the "w/o r.p." ablation)
    encoder: str = "lightgcn"  # "lightgcn" (trained here, cached) or a finished run directory with user vectors
    encoder_epochs: int = 300
    encoder_patience: int = 10
    encoder_embedding_size: int = 64
    pool: str | None = None  # reuse a saved reasoning pool directory instead of building one
    retrieval: str = "auto"  # auto | exact | faiss
    text_field: str = "step2"  # what is encoded for the user side: step2 (the paper), step1 or text
    fusion: str = "gated"  # gated: zero-init residual gate, starts as ID-only | attention: the paper's Eq. 5
    text_encoder: str | None = None  # sentence-transformers directory; None: the embedded MiniLM
    max_tokens: int = 256  # answer budget per seed
    max_history: int = 30  # history items shown per seed
    n_items: int = 10  # items asked for in Step 2
    fresh_items: bool = False  # Step 2's closed list leaves out the seed's history (reasoning.pool.PoolConfig)
    seed: int = 0  # sampling seed; fixed across training seeds so every seed sees one pool
    llm: LLMConfig = field(default_factory=LLMConfig)

    def __post_init__(self) -> None:
        if not (self.rationales or self.item_features):
            raise GenrecsysError("reland: at least one of rationales, item_features must be true")
        if self.sampling not in ("adaptive", "random"):
            raise GenrecsysError(f"reland.sampling must be adaptive or random, got {self.sampling!r}")
        if self.prompt not in ("cot", "direct"):
            raise GenrecsysError(f"reland.prompt must be cot or direct, got {self.prompt!r}")
        if self.retrieval not in ("auto", "exact", "faiss"):
            raise GenrecsysError(f"reland.retrieval must be auto, exact or faiss, got {self.retrieval!r}")
        if self.text_field not in ("step2", "step1", "text"):
            raise GenrecsysError(f"reland.text_field must be step2, step1 or text, got {self.text_field!r}")
        if self.fusion not in ("gated", "attention"):
            raise GenrecsysError(f"reland.fusion must be gated or attention, got {self.fusion!r}")
        for name in ("seed_fraction", "clusters"):
            v = getattr(self, name)
            if isinstance(v, bool) or (isinstance(v, float) and not 0 < v <= 1) or (isinstance(v, int) and v < 1):
                raise GenrecsysError(f"reland.{name} must be a fraction in (0, 1] or a count >= 1, got {v!r} "
                                     "(no seed users means an empty reasoning pool)")
        if min(self.encoder_epochs, self.encoder_patience, self.encoder_embedding_size, self.max_tokens,
               self.max_history, self.n_items) < 1:
            raise GenrecsysError("reland: encoder_epochs, encoder_patience, encoder_embedding_size, max_tokens, "
                                 "max_history and n_items must be >= 1")


@dataclass
class ExperimentConfig:
    model: str = "sasrec"
    model_params: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reland: RelandConfig | None = None  # RELAND rationales and/or item features (None: ID only)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # already built (e.g. a nested config carried over by the CLI)
            return value
        if not isinstance(value, dict):
            raise GenrecsysError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except GenrecsysError as exc:
                errors.append(str(exc))
        raise GenrecsysError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise GenrecsysError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise GenrecsysError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, where) for a, v in zip(args, value))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise GenrecsysError(f"{where}: expected a list, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [_convert(arg, v, where) for v in value]
    if origin is dict or tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise GenrecsysError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise GenrecsysError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 3e-3 (no dot) as a string; a user means the number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GenrecsysError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise GenrecsysError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}: " if where else ""
        raise GenrecsysError(
            f"{prefix}unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}"
        )
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a missing required field
        raise GenrecsysError(f"{where or cls.__name__}: {exc}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise GenrecsysError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GenrecsysError(f"{p}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise GenrecsysError(f"{p}: top level must be a mapping")
    return data


def load_experiment(path: str | Path) -> ExperimentConfig:
    return from_dict(ExperimentConfig, load_yaml(path), str(path))


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def with_fields(base: ExperimentConfig, fields: dict[str, Any], where: str = "") -> ExperimentConfig:
    """``base`` with dotted fields replaced: ``{"train.lr": 4e-3, "model_params.dim": 32}``.
    ``model_params`` may be empty in ``base``; any other unknown field is a one-line error."""
    data = dataclasses.asdict(base)
    for key, value in fields.items():
        node = data
        *path, leaf = key.split(".")
        for part in path:
            if not isinstance(node.get(part), dict):
                node[part] = {} if part == "model_params" else node.get(part)
            if not isinstance(node[part], dict):
                raise GenrecsysError(f"{where + ': ' if where else ''}{key!r} is not a config field")
            node = node[part]
        node[leaf] = value
    return from_dict(ExperimentConfig, data, where=where)
