"""RELAND stage of the main job: each backbone ID-only vs +RELAND on one split and seeds.

+RELAND is the paper's full variant (retrieved Step-2 rationale fused into the user side,
plus item text features), so the comparison with ID-only is Table 2's headline pair. The
LLM answers one prompt per seed user; everything else (encoder, retrieval, training) is
local. The LLM answer cache and the encoder cache make a rerun cost no LLM calls.

>>> # res = run_reland_stage(Path("outputs/main/reland"), models=("sasrec",), reland=RelandConfig(),
>>> #                        train=lambda name: TrainConfig(), n_seeds=1, split=split)
>>> # text = reland_section(res, "reland")
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from genrecsys.config import RelandConfig, TrainConfig

if TYPE_CHECKING:
    from genrecsys.data.splits import SplitData

METRICS = ("ndcg@10", "hit@10")
N_EXAMPLES = 3
MOSTLY_UNPARSED = 0.5  # above this share of unparsed seed answers the report says so up front


def run_reland_stage(out: Path, *, models: tuple[str, ...], reland: RelandConfig, train: Callable[[str], TrainConfig],
                     n_seeds: int,
                     split: SplitData, cache_dir: Path | None = None,
                     baselines: dict[str, Path] | None = None) -> dict[str, Any]:
    """Train ID-only and +RELAND for each of ``models`` into ``out/runs/<model>/``.

    ``train(model)`` gives a model's training settings, the same for both variants.
    ``baselines`` maps a model to an ID-only run the backbone stage already trained with
    the same split, seeds and training settings; it is reused rather than trained twice.
    Returns per model both metric dicts, the paired tests and the run directories, plus
    the LLM block of the first +RELAND run and example explanations.
    """
    from genrecsys.config import ExperimentConfig
    from genrecsys.eval.compare import compare_runs, seeds_of

    baselines = baselines or {}
    res: dict[str, Any] = {"models": {}, "config": asdict(reland), "n_seeds": n_seeds}
    for name in models:
        id_dir = baselines.get(name)
        if id_dir is None:
            id_dir = out / "runs" / name / "id-only"
            _say(f"[main] RELAND: training {name} ID-only ({n_seeds} seed(s))")
            _train(ExperimentConfig(model=name, train=train(name)), id_dir, n_seeds, split, cache_dir)
        else:
            _say(f"[main] RELAND: {name} ID-only reused from the backbone stage ({id_dir})")
        rel_dir = out / "runs" / name / "reland"
        rel_train = train(name)
        if rel_train.max_seconds is not None:
            # A wall-clock cap (quick mode) would give +RELAND, slower per epoch, fewer epochs
            # than ID-only; train it for ID-only's epochs instead, so the pair differs in inputs only.
            rel_train = replace(rel_train, epochs=max(1, round(_metrics(id_dir)["epochs"])), max_seconds=None)
        ref_dir, entry = id_dir, {}
        if reland.fusion == "gated":
            # Warm start: +RELAND begins as the trained ID-only model (the gate is zero) and
            # keeps it unless an epoch beats it on validation: the fusion cannot hurt there.
            rel_train = replace(rel_train, init_from=str(id_dir))
            # The fair control: ID-only continued from the same start for the same epochs, so
            # the pair differs in the RELAND inputs only (a warm start alone trains longer than
            # a capped ID-only run, and part of a gain over it would be those epochs).
            ref_dir = out / "runs" / name / "id-only-continued"
            _say(f"[main] RELAND: training {name} ID-only continued from the same start (the control)")
            _train(ExperimentConfig(model=name, train=rel_train), ref_dir, n_seeds, split, cache_dir)
            entry = {"id_only_continued": _metrics(ref_dir), "id_only_continued_dir": str(ref_dir)}
        _say(f"[main] RELAND: training {name} +RELAND ({n_seeds} seed(s); the LLM pool is built once)")
        _train(ExperimentConfig(model=name, train=rel_train, reland=reland), rel_dir, n_seeds, split, cache_dir)
        # on the seeds of this command's means: the directories may hold more from a larger --seeds
        rel_metrics = _metrics(rel_dir)
        cmp = compare_runs(ref_dir, rel_dir, metrics=METRICS, seeds=seeds_of(_metrics(ref_dir), rel_metrics))
        res["models"][name] = {
            "id_only": _metrics(id_dir), "reland": rel_metrics, "id_only_dir": str(id_dir),
            "reland_dir": str(rel_dir), **entry,
            "tests": {r.metric: {"diff": r.diff, "t_pvalue": r.t_pvalue, "wilcoxon_pvalue": r.wilcoxon_pvalue,
                                 "n_users": cmp.n_users} for r in cmp.rows}}
    first = res["models"][models[0]]
    res["llm"] = first["reland"].get("llm") or {}
    res["examples"] = examples(Path(first["reland_dir"]), cache_dir)
    return res


def _train(exp, run_dir: Path, n_seeds: int, split: SplitData, cache_dir: Path | None) -> None:
    from genrecsys.experiment import run_experiment, run_seeds

    if n_seeds > 1:
        run_seeds(exp, run_dir, n_seeds, cache_dir=cache_dir)
    else:
        run_experiment(exp, run_dir, cache_dir=cache_dir, split=split)


def _metrics(run_dir: Path) -> dict[str, Any]:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"test": m["test"], "test_std": m.get("test_std", {}), "epochs": m.get("epochs"),
            "train_seconds": m.get("train_seconds"), "llm": m.get("llm"), "seeds": m.get("seeds", [m.get("seed")])}


def _say(text: str) -> None:
    print(text, flush=True)  # like the main job's own [main] lines: always, progress bars aside


# ----------------------------------------------------------------------------- explanations
def examples(run_dir: Path, cache_dir: Path | None, n: int = N_EXAMPLES) -> list[dict[str, Any]]:
    """``n`` users (not seeds themselves, each of another seed, most similar first) with the Step 1
    rationale they were given, whether the seed's answer parsed, and the run's top-3 titles."""
    import pandas as pd

    from genrecsys.experiment import load_run
    from genrecsys.reasoning.run import ASSIGNMENT, POOL_DIR, RELAND_DIR
    from genrecsys.serve.recommend import recommend

    reland_dir = run_dir / RELAND_DIR
    if not reland_dir.is_dir():  # several seeds: the first one built the pool
        reland_dir = sorted(run_dir.glob(f"seed-*/{RELAND_DIR}"))[0]
    frame = pd.read_parquet(reland_dir / ASSIGNMENT)
    pool_file = reland_dir / POOL_DIR / "pool.parquet"
    parsed = {}
    if pool_file.is_file():
        pool = pd.read_parquet(pool_file, columns=["user", "parsed"])
        parsed = dict(zip(pool["user"].astype(int), pool["parsed"].astype(bool)))
    others = frame[frame["user"] != frame["seed_user"]].sort_values("similarity", ascending=False, kind="stable")
    picked = others.drop_duplicates("seed_user").head(n)  # n different rationales, not one rationale n times
    if picked.empty:
        return []
    _, split, model = load_run(run_dir, cache_dir)
    recs = {r.user: r for r in recommend(model, split, picked["user"].tolist(), k=3)}
    return [{"user": str(row.user), "seed_user": str(row.seed_user), "similarity": float(row.similarity),
             "parsed": bool(parsed.get(int(row.seed_index), False)), "step1": str(row.step1),
             "top3": list(recs[str(row.user)].titles) if str(row.user) in recs else []}
            for row in picked.itertuples()]


# ----------------------------------------------------------------------------- report
def reland_section(res: dict[str, Any], plot_dir: Path, rel: str = "reland") -> str:
    """The report's RELAND section (Markdown) and its plot ``plot_dir/reland.png``."""
    from genrecsys.eval.report import fmt_mean_std, markdown_table, write_comparison_table

    rows, plot_rows = [], []
    for name, r in res["models"].items():
        for label, key in (("ID-only", "id_only"), ("ID-only, continued (control)", "id_only_continued"),
                           ("+RELAND", "reland")):
            if key not in r:
                continue
            m = r[key]
            p = [f"{r['tests'][k]['diff']:+.4f} ({_p(r['tests'][k]['t_pvalue'])})" if key == "reland" else "—"
                 for k in METRICS]
            rows.append([name, label, *[fmt_mean_std(m["test"][k], m["test_std"].get(k)) for k in METRICS], *p,
                         f"{m['epochs']:.0f}" if m.get("epochs") is not None else "—"])
            plot_rows.append({"label": f"{name} {label}", "test": m["test"], "test_std": m["test_std"],
                              "seeds": m["seeds"]})
    write_comparison_table(plot_rows, plot_dir / "reland.png", metrics=METRICS, title="RELAND: ID-only vs +RELAND")
    cfg, llm = res["config"], res["llm"]
    backend = f"{llm.get('backend', cfg['llm']['backend'])}:{llm.get('model') or 'embedded SmolLM2-135M'}"
    seed_users, unparsed = int(llm.get("seed_users", 0)), int(llm.get("unparsed", 0))
    text = ("## RELAND (LLM reasoning pool + retrieval)\n\n"
            f"Same split and seeds as the backbones ({res['n_seeds']} seed(s)); +RELAND = retrieved Step-2 rationale "
            f"fused into the user side plus item text features. Seed users {_budget(cfg['seed_fraction'])} "
            f"({cfg['sampling']} sampling, clusters {_budget(cfg['clusters'])}), {cfg['prompt']} prompt, at most "
            f"{cfg['max_tokens']} answer tokens, behaviour encoder: {_encoder(cfg)}.\n\n"
            + markdown_table(["model", "variant", "test NDCG@10", "test HR@10", "Δ NDCG@10 (paired t p)",
                              "Δ HR@10 (paired t p)", "epochs"], rows)
            + "\nΔ: mean per-user difference of +RELAND on the test users (each user's value averaged over "
              "seeds), paired t-test, against "
            + ("the control. +RELAND (gated) starts from the ID-only run's selected weights and trains on for its "
               "own epochs (the column), keeping the start unless an epoch beats it on validation; the control "
               "does the same without RELAND's inputs (ID-only continued from the same start, same epochs, same "
               "rule), so Δ is what the text adds and not the extra epochs.\n\n" if cfg.get("fusion") == "gated" else
               "ID-only. Both variants train for the same number of epochs (with a wall-clock cap, +RELAND takes ID-only's "
               "epoch count).\n\n")
            + f"LLM cost ({backend}): {llm.get('calls', 0):,} calls for {seed_users:,} seed users of "
            f"{llm.get('users', 0):,}; {llm.get('prompt_tokens', 0):,} prompt + {llm.get('completion_tokens', 0):,} "
            f"completion tokens; {llm.get('wall_s', 0.0):.1f} s wall time ({llm.get('backend_calls', 0):,} backend "
            f"calls, {llm.get('cache_hits', 0):,} answered from the cache).\n\n"
            + (markdown_table(["format failures", "categories out of vocabulary", "items out of catalog",
                               "contract violations", "fallbacks", "constrained answers", "tok/s constrained",
                               "tok/s free"],
                              [[llm.get(k, "—") for k in ("format_failures", "out_of_vocabulary", "out_of_catalog",
                                                          "contract_violations", "fallbacks", "constrained_answers",
                                                          "constrained_tokens_per_s", "unconstrained_tokens_per_s")]])
               + "\nAnswers decoded under the reland_cot contract (a grammar over the catalog's genres and titles) "
                 "have none of the first three; fusion form: " + str(cfg.get("fusion", "attention"))
               + (" (a residual gate that starts at zero, warm-started from the ID-only run: +RELAND begins as the "
                  "trained ID-only model and keeps it unless an epoch beats it on validation)" if
                  cfg.get("fusion") == "gated" else " (the paper's Eq. 5 attention)") + ".\n\n"
               if "format_failures" in llm else "")
            + f"![RELAND test metrics]({rel}.png)\n\n")
    if seed_users and unparsed / seed_users > MOSTLY_UNPARSED:
        text += (f"**Most seed answers did not parse** ({unparsed} of {seed_users} lack the Step 1 / Step 2 format): "
                 "those seeds' \"rationale\" is the model's whole raw answer, so +RELAND here measures little "
                 "reasoning. A small local model (SmolLM2-135M) often does this; point --llm-backend/--llm-model at "
                 "a stronger model for the paper's setting.\n\n")
    elif seed_users:
        text += f"{seed_users - unparsed} of {seed_users} seed answers parsed into Step 1 / Step 2.\n\n"
    if res["examples"]:
        text += "Example explanations (a user, the seed user whose rationale it retrieved, and the +RELAND top-3):\n\n"
        ex_rows = [[e["user"], e["seed_user"], f"{e['similarity']:.3f}",
                    _short(e["step1"]) + ("" if e["parsed"] else " *(unparsed: raw answer)*"),
                    "; ".join(e["top3"])] for e in res["examples"]]
        text += markdown_table(["user", "seed user", "similarity", "Step 1 rationale", "top-3 titles"], ex_rows) + "\n"
    return text


def _encoder(cfg: dict[str, Any]) -> str:
    if cfg["encoder"] == "lightgcn":
        return f"LightGCN trained for this stage (at most {cfg['encoder_epochs']} epochs)"
    return f"the user vectors of the LightGCN run `{Path(cfg['encoder']).name}` (backbone stage)"


def _budget(v: int | float) -> str:
    return f"{100 * v:g}% of users" if isinstance(v, float) else f"{v:,}"


def _p(p: float) -> str:
    return "no test" if p != p else ("p<1e-4" if p < 1e-4 else f"p={p:.3g}")


def _short(text: str, n: int = 220) -> str:
    flat = " ".join(text.split()).replace("|", "/")  # one table cell: no newlines, no column breaks
    return flat if len(flat) <= n else flat[: n - 1] + "…"
