"""The main job (README command one): prepare ML-100K, train every backbone over
seeds, and write one report with tables, significance tests and plots.

>>> # run_main_job(MainJobConfig(quick=True), Path("outputs/main"))
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

BACKBONES = ("pop", "bpr", "neumf", "lightgcn", "ngcf", "gru4rec", "sasrec", "bert4rec")
GENERATIVE = ("genrec",)
# Pretraining epochs for models that have a pretraining objective (full mode; quick skips it).
PRETRAIN = {"genrec": 10}


@dataclass
class MainJobConfig:
    quick: bool = False
    seeds: int | None = None  # default: 1 when quick, else 5
    models: tuple[str, ...] | None = None
    threads: int | None = None
    progress: bool = True
    quick_epochs: int = 15
    quick_seconds_per_model: float = 25.0

    @property
    def n_seeds(self) -> int:
        return self.seeds if self.seeds is not None else (1 if self.quick else 5)


def run_main_job(cfg: MainJobConfig, output_dir: Path, cache_dir: Path | None = None) -> Path:
    """Returns the path of the written report."""
    from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
    from genrecsys.data.load import prepare
    from genrecsys.data.splits import leave_one_out
    from genrecsys.data.stats import dataset_stats
    from genrecsys.experiment import run_experiment, run_seeds
    from genrecsys.registry import MODELS

    output_dir.mkdir(parents=True, exist_ok=True)
    models = cfg.models or BACKBONES + GENERATIVE
    for m in models:
        MODELS.get(m)
    t0 = time.perf_counter()
    ds = prepare(DataConfig(dataset="ml-100k"), cache_dir)
    stats = dataset_stats(ds)
    split = leave_one_out(ds)
    results = {}
    for name in models:
        train = TrainConfig(threads=cfg.threads, progress=cfg.progress)
        if cfg.quick:
            train = replace(train, epochs=cfg.quick_epochs, max_seconds=cfg.quick_seconds_per_model)
        elif name in PRETRAIN:
            train = replace(train, pretrain_epochs=PRETRAIN[name])
        exp = ExperimentConfig(model=name, train=train)
        run_dir = output_dir / "runs" / name
        print(f"[main] training {name} ({cfg.n_seeds} seed(s))", flush=True)
        if cfg.n_seeds > 1:
            results[name] = run_seeds(exp, run_dir, cfg.n_seeds, cache_dir=cache_dir)
        else:
            m = run_experiment(exp, run_dir, cache_dir=cache_dir, split=split)
            results[name] = {**m, "test_std": {}, "valid_std": {}}
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    report = write_main_report(output_dir, results, stats, cfg, time.perf_counter() - t0)
    return report


def write_main_report(output_dir: Path, results: dict, stats: dict, cfg: MainJobConfig, seconds: float) -> Path:
    from genrecsys.data.stats import format_stats_table
    from genrecsys.eval.compare import compare_runs
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
        cmp = compare_runs(output_dir / "runs" / name, output_dir / "runs" / best, metrics=("ndcg@10",))
        row = cmp.rows[0]  # diff = best - name
        sig_rows.append([f"{best} − {name}", f"{row.diff:+.4f}", f"{row.t_pvalue:.2g}", f"{row.wilcoxon_pvalue:.2g}"])
    text = (
        "# genrecsys main job — ML-100K\n\n"
        f"Mode: {'quick (capped epochs, 1 seed)' if cfg.quick else f'full ({cfg.n_seeds} seeds, early stopping)'}; "
        f"total wall time {seconds:.0f} s.\n\n"
        "Protocol: chronological leave-one-out (last item test, second last validation; timestamp ties keep file "
        "order), full ranking over all 1,682 items with already-seen items masked, model selection on validation "
        "NDCG@10 (patience 10).\n\n## Dataset\n\n" + format_stats_table({"ml-100k": stats})
        + "\n## Backbones\n\n" + table
        + "\nRecBole column: RecBole 1.2.1 on the same split, measured on a 2-core machine (see BENCHMARKS.md).\n\n"
        "![test NDCG@10](ndcg.png)\n\n![validation NDCG@10 per epoch](curves.png)\n\n"
        f"## Paired tests against the best model ({best}), per-user test NDCG@10\n\n"
        + markdown_table(["pair", "mean diff", "t-test p", "Wilcoxon p"], sig_rows)
    )
    path = output_dir / "report.md"
    path.write_text(text)
    return path


def _history(run_dir: Path) -> list:
    for cand in [run_dir / "history.json", *sorted(run_dir.glob("seed-*/history.json"))[:1]]:
        if cand.is_file():
            return json.loads(cand.read_text())
    return []
