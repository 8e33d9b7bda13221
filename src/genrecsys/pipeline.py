"""The main job (README command one): prepare ML-100K, train every backbone over seeds,
then each seed system as a stage (RELAND, GENRE; genrecsys.stages), and write one report
with tables, significance tests and plots.

Stages use an LLM: by default the embedded local SmolLM2-135M (offline); ``llm`` points
them at any backend (`genrecsys main --llm-backend openai --llm-base-url ...`). Answers are
cached, so a rerun sends nothing to the LLM. Quick mode keeps the LLM work to a small seed
budget and a few augmented rows; full mode runs the papers' settings, where GENRE over
every item and user takes hours with SmolLM2 on a CPU (``genre=False`` skips it).

>>> # run_main_job(MainJobConfig(quick=True), Path("outputs/main"))
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from genrecsys.config import LLMConfig, RelandConfig, TrainConfig
from genrecsys.errors import GenrecsysError

BACKBONES = ("pop", "bpr", "neumf", "lightgcn", "ngcf", "gru4rec", "sasrec", "bert4rec")
GENERATIVE = ("genrec", "hstu", "tiger")  # generative recommenders: seq2seq codes (GenRec, TIGER) and HSTU
FAMILIES = ("multvae", "diffrec")  # the survey's latent-variable and diffusion generators (benchmarks/families.py: all)
# Pretraining epochs for models that have a pretraining objective (full mode; quick skips it).
PRETRAIN = {"genrec": 10}
GENRE_QUICK_VARIANTS = ("NS", "UP", "NG")
GENRE_FULL_VARIANTS = ("NS", "UP", "NG", "UP→NG", "ALL")
QUICK_STAGES_NOTE = ("\n## Seed systems (quick mode)\n\nQuick mode runs the RELAND and GENRE stages end to end on a "
                     "smoke budget: one seed, capped epochs, a small seed-user pool and a handful of augmented rows "
                     "answered by a small LLM. Their differences are mostly seed-level noise, not the papers' "
                     "results; run without --quick (5 seeds, full budgets) for those.\n")


@dataclass
class MainJobConfig:
    """What the main job runs. Stage settings left at None take the mode's default (quick
    mode: smoke budgets that keep the job to minutes; full mode: the papers' settings)."""

    quick: bool = False
    seeds: int | None = None  # default: 1 when quick, else 5
    models: tuple[str, ...] | None = None
    threads: int | None = None
    progress: bool = True
    quick_epochs: int = 15
    quick_seconds_per_model: float = 25.0
    # beyond accuracy: coverage, novelty, diversity, popularity, user groups of every backbone's lists
    beyond: bool = True
    # RELAND stage (see reland_config)
    reland: bool = True
    reland_models: tuple[str, ...] | None = None  # sasrec (quick); sasrec, lightgcn (full)
    reland_seed_fraction: int | float | None = None  # 2% of users (quick); 10%, the paper's (full)
    reland_max_tokens: int | None = None  # 128 with 3 items (quick: SmolLM2 on 2 cores); 256 with 10 (full)
    # LightGCN behaviour encoder, trained only when the backbone stage did not train LightGCN
    # or a wall-clock cap cut it short (else its run is the encoder): 2 epochs (quick), 300
    # with patience 10 (full)
    reland_encoder_epochs: int | None = None
    # GENRE stage (see _genre_stage)
    genre: bool = True
    # nrms (quick: one model keeps the stage short); nrms + dcn, one matching and one CTR model (full)
    genre_models: tuple[str, ...] | None = None
    genre_variants: tuple[str, ...] | None = None  # NS, UP, NG (quick); + UP→NG, ALL (full)
    genre_limit: int | None = None  # LLM rows per augmentation step: 6 (quick); None = every row (full)
    genre_epochs: int | None = None  # 1 (quick); at most 20 with patience 3 (full)
    llm: LLMConfig = field(default_factory=LLMConfig)  # default: the embedded local SmolLM2-135M

    def __post_init__(self) -> None:
        from genrecsys.stages.genre import VARIANTS

        unknown = [v for v in self.genre_variants or () if v not in VARIANTS]
        if unknown:
            raise GenrecsysError(f"genre variants {unknown} unknown; choose from {', '.join(VARIANTS)}")
        if self.genre_limit is not None and self.genre_limit < 1:
            raise GenrecsysError("genre_limit must be >= 1 (None: every row)")
        if self.genre_epochs is not None and self.genre_epochs < 1:
            raise GenrecsysError("genre_epochs must be >= 1")

    @property
    def n_seeds(self) -> int:
        return self.seeds if self.seeds is not None else (1 if self.quick else 5)

    def train_config(self, name: str) -> TrainConfig:
        """Training settings of a backbone; the RELAND stage uses the same ones, so its
        ID-only runs are the backbone stage's."""
        train = TrainConfig(threads=self.threads, progress=self.progress)
        if self.quick:
            return replace(train, epochs=self.quick_epochs, max_seconds=self.quick_seconds_per_model)
        if name in PRETRAIN:
            return replace(train, pretrain_epochs=PRETRAIN[name])
        return train

    @property
    def genre_model_names(self) -> tuple[str, ...]:
        return self.genre_models or (("nrms",) if self.quick else ("nrms", "dcn"))

    def reland_config(self) -> RelandConfig:
        """The +RELAND variant's settings (the encoder may be swapped for the backbone
        stage's LightGCN run, see _reland_stage)."""

        q = self.quick
        return RelandConfig(
            item_features=True,  # +RELAND is the paper's full variant: rationales + item text
            seed_fraction=self.reland_seed_fraction if self.reland_seed_fraction is not None else (0.02 if q else 0.1),
            # quick: 3 items per rationale in 128 tokens, so the contracted answer (Step 1 line,
            # categories, catalog titles) fits its budget instead of being cut off
            clusters=0.05, max_tokens=self.reland_max_tokens or (128 if q else 256), n_items=3 if q else 10,
            # quick: 10 history titles per seed prompt instead of 30; prefill dominates SmolLM2 on a CPU
            max_history=10 if q else 30,
            encoder_epochs=self.reland_encoder_epochs or (2 if q else 300), llm=self.stage_llm())

    def stage_llm(self) -> LLMConfig:
        """The LLM settings; a local backend runs on the job's threads unless told otherwise."""
        if self.llm.threads is None and self.threads is not None:
            return replace(self.llm, threads=self.threads)
        return self.llm


def run_main_job(cfg: MainJobConfig, output_dir: Path, cache_dir: Path | None = None) -> Path:
    """Returns the path of the written report."""
    from genrecsys.config import DataConfig, ExperimentConfig
    from genrecsys.data.load import prepare
    from genrecsys.data.splits import leave_one_out
    from genrecsys.data.stats import dataset_stats
    from genrecsys.experiment import run_experiment, run_seeds
    from genrecsys.registry import MODELS

    output_dir.mkdir(parents=True, exist_ok=True)
    models = cfg.models or BACKBONES + GENERATIVE + FAMILIES
    reland_models = cfg.reland_models or (("sasrec",) if cfg.quick else ("sasrec", "lightgcn"))
    for m in (*models, *(reland_models if cfg.reland else ()), *(cfg.genre_model_names if cfg.genre else ())):
        MODELS.get(m)  # fail fast on an unknown name, before hours of training
    t0 = time.perf_counter()
    ds = prepare(DataConfig(dataset="ml-100k"), cache_dir)
    stats = dataset_stats(ds)
    split = leave_one_out(ds)
    if cache_dir is not None:
        split.meta["cache_dir"] = str(cache_dir)  # models and RELAND find embedded assets here
    results = {}
    for name in models:
        exp = ExperimentConfig(model=name, train=cfg.train_config(name))
        run_dir = output_dir / "runs" / name
        print(f"[main] training {name} ({cfg.n_seeds} seed(s))", flush=True)
        if cfg.n_seeds > 1:
            results[name] = run_seeds(exp, run_dir, cfg.n_seeds, cache_dir=cache_dir)
        else:
            m = run_experiment(exp, run_dir, cache_dir=cache_dir, split=split)
            results[name] = {**m, "test_std": {}, "valid_std": {}}
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    timings = {"backbones_s": time.perf_counter() - t0}
    sections = []
    if cfg.beyond:
        t = time.perf_counter()
        sections.append(_beyond_stage(output_dir, models, cache_dir))
        timings["beyond_s"] = time.perf_counter() - t
    if cfg.reland:
        t = time.perf_counter()
        sections.append(_reland_stage(cfg, output_dir, split, reland_models, models, cache_dir))
        timings["reland_s"] = time.perf_counter() - t
    if cfg.genre:
        t = time.perf_counter()
        sections.append(_genre_stage(cfg, output_dir, cache_dir))
        timings["genre_s"] = time.perf_counter() - t
    return write_main_report(output_dir, results, stats, cfg, time.perf_counter() - t0, sections=sections,
                             timings=timings)


def backbone_encoder(run_dir: Path) -> Path | None:
    """The backbone stage's LightGCN run as RELAND's behaviour encoder, unless a wall-clock
    cap (quick mode) stopped any of its seeds: such vectors depend on how busy the machine
    was, so the seed users, and the prompts the LLM is paid for, would change from run to
    run. Then None: the stage trains its own encoder, fixed epochs, cached by its settings."""
    files = [run_dir / "metrics.json", *run_dir.glob("seed-*/metrics.json")]
    stops = [json.loads(f.read_text()).get("stopped_by") for f in files if f.is_file()]
    return run_dir if stops and "max_seconds" not in stops else None


def _beyond_stage(output_dir: Path, models, cache_dir: Path | None) -> str:
    """Beyond-accuracy metrics and user groups of every backbone's test lists."""
    from genrecsys.stages.holistic import run_holistic, section

    try:
        print("[main] beyond accuracy: coverage, novelty, diversity, popularity, user groups", flush=True)
        return section({name: run_holistic(output_dir / "runs" / name, cache_dir) for name in models}, output_dir)
    except (GenrecsysError, OSError, ValueError) as exc:
        print(f"[main] beyond-accuracy stage failed: {exc}", flush=True)
        return f"## Beyond accuracy\n\nThe stage failed: {exc}\n\n"


def _reland_stage(cfg: MainJobConfig, output_dir: Path, split, reland_models: tuple[str, ...],
                  trained: tuple[str, ...], cache_dir: Path | None) -> str:
    """Run the RELAND stage and return its report section (a failure the user can fix,
    e.g. an unreachable LLM server, becomes a note in the report, not a lost job)."""
    from genrecsys.stages.reland import reland_section, run_reland_stage

    out = output_dir / "reland"
    print(f"[main] RELAND stage: {', '.join(reland_models)} ID-only vs +RELAND", flush=True)
    reland = cfg.reland_config()
    encoder_run = backbone_encoder(output_dir / "runs" / "lightgcn") if "lightgcn" in trained else None
    if encoder_run is not None:  # the paper's behaviour encoder is LightGCN: the backbone stage's run is one
        reland = replace(reland, encoder=str(encoder_run.resolve()))
    try:
        res = run_reland_stage(out, models=reland_models, reland=reland,
                               train=cfg.train_config, n_seeds=cfg.n_seeds, split=split,
                               cache_dir=cache_dir,
                               baselines={m: output_dir / "runs" / m for m in reland_models if m in trained})
    except GenrecsysError as exc:
        print(f"[main] RELAND stage failed: {exc}", flush=True)
        return f"## RELAND\n\nThe stage failed: {exc}\n\n"
    (out / "reland.json").write_text(json.dumps(res, indent=2, default=str))
    return reland_section(res, output_dir, rel="reland")


def _genre_stage(cfg: MainJobConfig, output_dir: Path, cache_dir: Path | None) -> str:
    """Run the GENRE stage and return its report section (see :func:`_reland_stage`)."""
    from genrecsys.llm.client import LLM
    from genrecsys.stages.genre import genre_section, run_genre_stage

    out = output_dir / "genre"
    variants = cfg.genre_variants or (GENRE_QUICK_VARIANTS if cfg.quick else GENRE_FULL_VARIANTS)
    # quick: 6 rows per step; the generator's rows are sequential per user (2 items each) and
    # SmolLM2 re-asks most of them, so NG dominates the stage's LLM time
    limit = cfg.genre_limit if cfg.genre_limit is not None else (6 if cfg.quick else None)
    epochs = cfg.genre_epochs or (1 if cfg.quick else 20)
    train = TrainConfig(threads=cfg.threads, progress=cfg.progress, epochs=epochs, patience=3)
    print(f"[main] GENRE stage: variants {', '.join(variants)}; models {', '.join(cfg.genre_model_names)}", flush=True)
    try:
        llm = LLM(cfg.stage_llm(), cache_dir, progress=cfg.progress)
        try:
            res = run_genre_stage(out, llm, variants=variants, models=cfg.genre_model_names, train=train,
                                  n_seeds=cfg.n_seeds, limit=limit, quick_tokens=cfg.quick, cache_dir=cache_dir)
        finally:
            llm.close()
    except GenrecsysError as exc:
        print(f"[main] GENRE stage failed: {exc}", flush=True)
        return f"## GENRE\n\nThe stage failed: {exc}\n\n"
    (out / "genre.json").write_text(json.dumps(res, indent=2, default=str, ensure_ascii=False))
    return genre_section(res, output_dir, rel="genre")


def write_main_report(output_dir: Path, results: dict, stats: dict, cfg: MainJobConfig, seconds: float, *,
                      sections: list[str] | tuple[str, ...] = (), timings: dict[str, float] | None = None) -> Path:
    """report.md: dataset, backbone table and plots, paired tests, then one section per stage."""
    from genrecsys.data.stats import format_stats_table
    from genrecsys.eval.compare import compare_runs, seeds_of
    from genrecsys.eval.peers import RECBOLE_ML100K
    from genrecsys.eval.report import fmt_mean_std, markdown_table, plot_curves, valid_curve, write_comparison_table

    metrics = ("hit@10", "ndcg@10", "mrr@10")
    rows = []
    for name, r in results.items():
        peer = RECBOLE_ML100K.get(name)
        rows.append([name] + [fmt_mean_std(r["test"][m], r["test_std"].get(m)) for m in metrics]
                    + [f"{r['epochs']:.0f}", f"{r['seconds_per_epoch']:.2f}", f"{r['train_seconds']:.1f}",
                       f"{peer['ndcg@10']:.4f}{'' if peer['converged'] else ' (not converged)'}" if peer else "—"])
    table = markdown_table(["model", *[f"test {m}" for m in metrics], "epochs", "s/epoch", "train s", "RecBole ndcg@10"], rows)
    write_comparison_table(list(results.values()), output_dir / "ndcg.png", metrics=("ndcg@10",), title="ML-100K test NDCG@10")
    curves = {}
    for name in results:
        hist = _history(output_dir / "runs" / name)
        if hist:
            curves[name] = valid_curve(hist)
    plot_curves(curves, output_dir / "curves.png")
    best = max(results, key=lambda n: results[n]["test"]["ndcg@10"])
    sig_rows = []
    for name in results:
        if name == best:
            continue
        cmp = compare_runs(output_dir / "runs" / name, output_dir / "runs" / best, metrics=("ndcg@10",),
                           seeds=seeds_of(results[name], results[best]))  # the seeds of the table's means
        row = cmp.rows[0]  # diff = best - name
        sig_rows.append([f"{best} − {name}", f"{row.diff:+.4f}", f"{row.t_pvalue:.2g}", f"{row.wilcoxon_pvalue:.2g}"])
    text = (
        "# genrecsys main job — ML-100K\n\n"
        f"Mode: {'quick (capped epochs, 1 seed)' if cfg.quick else f'full ({cfg.n_seeds} seeds, early stopping)'}; "
        f"total wall time {seconds:.0f} s"
        + (" (" + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in timings.items()) + ")" if timings else "") + ".\n\n"
        "Protocol: chronological leave-one-out (last item test, second last validation; timestamp ties keep file "
        "order), full ranking over all 1,682 items with already-seen items masked, model selection on validation "
        "NDCG@10 (patience 10).\n\n## Dataset\n\n" + format_stats_table({"ml-100k": stats})
        + "\n## Backbones\n\n" + table
        + "\nRecBole column: RecBole 1.2.1 on the same split, measured on a 2-core machine (see BENCHMARKS.md).\n\n"
        "![test NDCG@10](ndcg.png)\n\n![validation NDCG@10 per epoch](curves.png)\n\n"
        f"## Paired tests against the best model ({best}), per-user test NDCG@10\n\n"
        + markdown_table(["pair", "mean diff", "t-test p", "Wilcoxon p"], sig_rows)
        + serve_note(output_dir / "runs" / best, best)
        + (QUICK_STAGES_NOTE if cfg.quick and sections else "")
        + "".join("\n" + sec for sec in sections)
    )
    path = output_dir / "report.md"
    path.write_text(text)
    return path


def serve_note(run_dir: Path, name: str) -> str:
    """How to put the best run behind the HTTP service (README "Serving")."""
    return (f"\n## Serve the best run\n\n`{name}` answers over HTTP, with the web page at http://127.0.0.1:8000/ "
            f"and the API docs at /docs:\n\n```bash\ngenrecsys serve {run_dir}\n"
            f"curl 'http://127.0.0.1:8000/v1/recommend?user=196&k=10'\n```\n\n"
            "See the README's \"Serving\" section for chat, reload and metrics.\n")


def _history(run_dir: Path) -> list:
    for cand in [run_dir / "history.json", *sorted(run_dir.glob("seed-*/history.json"))[:1]]:
        if cand.is_file():
            return json.loads(cand.read_text())
    return []
