"""GENRE stage of the main job: LLM-augmented ML-100K variants through ``augment()``, then
one matching (news) model and one CTR model trained on ORI and on each variant (and on UP∅,
UP's no-profile control, whenever UP runs).

Setting (benchmarks/genre.py's): chronological leave-one-out; 20% of the users keep only
their 1-3 most recent training items (simulated new users, baked into the ORI dataset
directory so prompts and models see the same short histories); constructed impressions
(the clicked item + 24 never-seen items, seed 0), so every model and variant is scored on
the same impressions. Every variant is compared with ORI per test impression (paired).

Cost: the LLM work grows with the rows: with every item and user (full mode) the embedded
SmolLM2-135M needs hours on a 2-core CPU (about 1,682 titles + 943 profiles + 2 items for
each of ~190 new users per pass, and ALL repeats the three); ``limit`` caps the rows per task.

>>> # res = run_genre_stage(Path("outputs/main/genre"), llm, variants=("NS", "NG"), models=("nrms", "dcn"),
>>> #                       train=TrainConfig(epochs=1), n_seeds=1, limit=8, quick_tokens=True)
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genrecsys.config import TrainConfig

if TYPE_CHECKING:
    from genrecsys.llm.client import LLM

# variant -> (directory, augment task, synthetic items per new user)
VARIANTS: dict[str, tuple[str, str, int]] = {
    "NS": ("ns", "summarize", 0), "UP": ("up", "profile", 0), "NG": ("ng", "generate", 2),
    "UP→NG": ("up-ng", "chain", 2), "ALL": ("all", "all", 2)}
# UP is the one variant that changes the model: profiles reach it only through interest fusion.
# The control UP∅ trains that model on ORI's data with every profile empty (no LLM), so
# UP − UP∅ is what the profiles add and UP∅ − ORI what the fusion layer alone does.
CONTROLS = {"UP∅": ("up-empty", "UP")}  # control -> (directory, the variant it controls)
MODEL_PARAMS = {"UP": {"interest_fusion": True}, "UP∅": {"interest_fusion": True}}
FUSION_FORMS = ("gated", "mlp")  # gated: starts as the ORI model (the stage's default); mlp: the paper's eq. (2)
# per-variant LLM answer quality and decode speed, from the manifest (genrecsys.llm.accounting)
LLM_QUALITY = ("format_failures", "out_of_vocabulary", "out_of_catalog", "contract_violations", "fallbacks",
               "constrained_answers", "constrained_tokens_per_s", "unconstrained_tokens_per_s")
COLD_START = {"fraction": 0.2, "min_len": 1, "max_len": 3, "seed": 0}
# short answers keep the quick stage short; a contracted generated item needs up to 128
QUICK_TOKENS = {"summarize": 32, "profile": 48, "generate": 128}
QUICK_HISTORY = 10  # history titles per profile prompt in quick mode (GENRE: 30); prefill dominates on a CPU
METRICS = ("auc", "mrr", "ndcg@10")
ALPHA = 0.05


def model_params(name: str, fusion_form: str = "mlp") -> dict[str, Any]:
    """The model parameters a variant trains with; the fusion form only where there is fusion."""
    params = dict(MODEL_PARAMS.get(name, {}))
    if params.get("interest_fusion") and fusion_form != "mlp":
        params["interest_fusion_form"] = fusion_form
    return params


def build_original(directory: Path, cache_dir: Path | None) -> list[str]:
    """ML-100K with 20% of the users cut to their 1-3 most recent training items, saved as a
    dataset directory (reused when present); returns the simulated new users (raw ids)."""
    import pandas as pd

    from genrecsys.data.coldstart import simulate_cold_start
    from genrecsys.data.load import load_dataset
    from genrecsys.data.schema import Dataset
    from genrecsys.data.splits import leave_one_out

    marker = directory / "cold_start.json"
    if marker.is_file():
        return json.loads(marker.read_text())["new_users"]
    ds = load_dataset("ml-100k", cache_dir=cache_dir)
    cold = simulate_cold_start(leave_one_out(ds), **COLD_START)
    s = cold.split
    keep = set()
    for part in (s.train, s.valid, s.test):  # what the cold-start split still holds, as (user, item) pairs
        keep |= set(zip(s.user_ids[part.users()], s.item_ids[part.items]))
    inter = ds.interactions
    mask = pd.Series([pair in keep for pair in zip(inter["user"], inter["item"])], index=inter.index)
    Dataset("ml-100k-cold", inter[mask], ds.items, ds.users).save(directory)
    new = sorted(str(u) for u in s.user_ids[cold.new_user])
    marker.write_text(json.dumps({**COLD_START, "new_users": new}, indent=1))
    return new


def build_fusion_control(ori: Path, out: Path) -> Path:
    """UP∅ (reused when present): ORI's dataset with the profile columns present and empty
    for every user, for training UP's model (interest fusion on) without a single profile."""
    from dataclasses import replace

    from genrecsys.data.load import load_dataset

    if (out / "interactions.parquet").is_file():
        return out
    ds = load_dataset(str(ori))
    users = ds.users.copy()
    users["topics"] = users["regions"] = None
    return replace(ds, name=f"{ds.name}+UP-empty", users=users).save(out)


def augment_config(n_items: int, limit: int | None, quick_tokens: bool, max_tokens: int | None = None):
    """Task settings; ``quick_tokens`` shortens answers and profile prompts (quick mode);
    ``max_tokens`` caps every task's answer (over the quick caps)."""
    from genrecsys.augment import AugmentConfig, GenerateConfig, ProfileConfig, SummarizeConfig

    caps = {t: max_tokens or (v if quick_tokens else None) for t, v in QUICK_TOKENS.items()}
    kw = {t: ({"max_tokens": v} if v else {}) for t, v in caps.items()}
    # new users: 1-4 visible training items (ours have 1-3; every real ML-100K user has >= 18)
    return AugmentConfig(summarize=SummarizeConfig(limit=limit, **kw["summarize"]),
                         profile=ProfileConfig(limit=limit, **kw["profile"],
                                               **({"history_cap": QUICK_HISTORY} if quick_tokens else {})),
                         generate=GenerateConfig(limit=limit, n_items=max(n_items, 1), min_history=1, max_history=4,
                                                 **kw["generate"]))


def run_genre_stage(out: Path, llm: LLM, *, variants: tuple[str, ...], models: tuple[str, ...], train: TrainConfig,
                    n_seeds: int, limit: int | None, quick_tokens: bool,
                    cache_dir: Path | None = None, fusion_form: str = "gated") -> dict[str, Any]:
    """Build ORI and ``variants`` under ``out/variants``, train ``models`` on each under
    ``out/runs/<variant>/<model>`` and test every variant against ORI. UP's models fuse the
    profiles in ``fusion_form`` (gated: they start as the ORI model)."""
    from genrecsys.augment import augment, load_variant

    root = out / "variants"
    ori = root / "ori"
    new_users = build_original(ori, cache_dir)
    res: dict[str, Any] = {"variants": {"ORI": {"path": str(ori)}}, "new_users": len(new_users), "limit": limit,
                           "models": list(models), "n_seeds": n_seeds, "runs": {}, "tests": {},
                           "fusion_form": fusion_form}
    for name in variants:
        sub, task, n_items = VARIANTS[name]
        rows = "all rows" if limit is None else f"at most {limit} rows per step"
        _say(f"[main] GENRE: augmenting {name} ({task}, {rows})")
        t0 = time.perf_counter()
        path = augment(task, str(ori), root / sub, llm, augment_config(n_items, limit, quick_tokens),
                       cache_dir=cache_dir, name=f"ml-100k-cold+{name}")
        m = load_variant(path).manifest
        res["variants"][name] = {"path": str(path), "task": task, "stage_wall_s": round(time.perf_counter() - t0, 1),
                                 **{k: m[k] for k in ("rows", "parse_failures", "requests", "cache_hits",
                                                      "backend_calls", "prompt_tokens", "completion_tokens", "cost",
                                                      "cost_total", "wall_s")},
                                 **{k: m.get(k) for k in LLM_QUALITY},
                                 "model": m["llm"]["model"], "backend": m["llm"]["backend"],
                                 "price": m["llm"]["price_per_1m_tokens"], "quality": m["quality"]}
    for control, (sub, base) in CONTROLS.items():
        if base in variants:
            res["variants"][control] = {"path": str(build_fusion_control(ori, root / sub)), "control_of": base}
    for name in res["variants"]:
        for model in models:
            _say(f"[main] GENRE: training {model} on {name} ({n_seeds} seed(s))")
            res["runs"].setdefault(name, {})[model] = _train(out, name, model, Path(res["variants"][name]["path"]),
                                                             train, n_seeds, cache_dir, fusion_form)
    from genrecsys.eval.compare import compare_runs, seeds_of

    def paired(base: str, other: str, model: str) -> dict[str, dict[str, float]]:
        # on the seeds of the two means shown (the directories may hold more from a larger --seeds)
        cmp = compare_runs(_run_dir(out, base, model), _run_dir(out, other, model), metrics=METRICS,
                           seeds=seeds_of(res["runs"][base][model], res["runs"][other][model]))
        return {r.metric: {"diff": r.diff, "t_pvalue": r.t_pvalue, "wilcoxon_pvalue": r.wilcoxon_pvalue,
                           "n": cmp.n_users} for r in cmp.rows}

    for name in res["variants"]:
        if name != "ORI":
            res["tests"][name] = {model: paired("ORI", name, model) for model in models}
    res["control_tests"] = {base: {model: paired(control, base, model) for model in models}  # e.g. UP − UP∅
                            for control, (_, base) in CONTROLS.items() if control in res["variants"]}
    return res


def _run_dir(out: Path, variant: str, model: str) -> Path:
    return out / "runs" / {**VARIANTS, **CONTROLS}.get(variant, ("ori",))[0] / model


def _train(out: Path, name: str, model: str, data_dir: Path, train: TrainConfig, n_seeds: int,
           cache_dir: Path | None, fusion_form: str = "gated") -> dict[str, Any]:
    from genrecsys.config import DataConfig, EvalConfig, ExperimentConfig, ImpressionConfig
    from genrecsys.experiment import run_experiment, run_seeds

    cfg = ExperimentConfig(model=model, model_params=model_params(name, fusion_form),
                           data=DataConfig(dataset=str(data_dir)), train=train,
                           eval=EvalConfig(protocol="impressions", impressions=ImpressionConfig(negatives=24)))
    run_dir = _run_dir(out, name, model)
    if n_seeds > 1:
        m = run_seeds(cfg, run_dir, n_seeds, cache_dir=cache_dir)
        m.pop("runs", None)
        return m
    m = run_experiment(cfg, run_dir, cache_dir=cache_dir)
    return {**m, "test_std": {}, "seeds": [m["seed"]]}


def _say(text: str) -> None:
    print(text, flush=True)  # like the main job's own [main] lines: always, progress bars aside


# ----------------------------------------------------------------------------- report
def genre_section(res: dict[str, Any], plot_dir: Path, rel: str = "genre") -> str:
    """The report's GENRE section (Markdown) and its plot ``plot_dir/genre.png``."""
    from genrecsys.eval.report import fmt_mean_std, markdown_table, write_comparison_table

    names = list(res["runs"])
    rows, plot_rows = [], []
    for model in res["models"]:
        for name in names:
            m = res["runs"][name][model]
            t = res["tests"].get(name, {}).get(model)
            vs = "—" if t is None else "; ".join(f"{k.upper()} {_mark(t[k])}" for k in ("auc", "ndcg@10"))
            rows.append([model if name == "ORI" else "", name,
                         *[fmt_mean_std(m["test"][k], m["test_std"].get(k)) for k in METRICS],
                         f"{m['test']['new_auc']:.4f}" if "new_auc" in m["test"] else "—", vs])
            plot_rows.append({"label": f"{model} {name}", "test": m["test"], "test_std": m["test_std"],
                              "seeds": m["seeds"]})
    write_comparison_table(plot_rows, plot_dir / "genre.png", metrics=METRICS, title="GENRE: ORI vs variants")
    cost_rows, quality_rows, contract_rows = [], [], []
    for name, v in res["variants"].items():
        if name == "ORI" or "control_of" in v:
            continue
        fail = f"{v['parse_failures']}/{v['rows']}" + (f" ({v['parse_failures'] / v['rows']:.0%})" if v["rows"] else "")
        cost_rows.append([name, v["task"], v["rows"], fail, v["backend_calls"], v["cache_hits"],
                          f"{v['prompt_tokens']:,}", f"{v['completion_tokens']:,}", _money(v["cost_total"]),
                          f"{v['wall_s']:.1f}"])
        contract_rows.append([name, v["task"], *[_q(v.get(k)) if v.get(k) is not None else "—" for k in LLM_QUALITY]])
        for task, q in v["quality"].items():
            quality_rows.append([name, task, ", ".join(f"{k} {_q(x)}" for k, x in q.items())])
    any_v = next((v for n, v in res["variants"].items() if n != "ORI" and "control_of" not in v), None)
    price = any_v["price"] if any_v is not None else {}
    llm = f"{any_v['backend']}:{any_v['model']}" if any_v else "—"
    limit = "every item / user" if res["limit"] is None else f"at most {res['limit']} rows per step"
    return ("## GENRE (LLM-augmented training data)\n\n"
            f"ML-100K, leave-one-out, {res['new_users']} simulated new users (20%, 1-3 recent training items kept); "
            "constructed impressions (clicked item + 24 never-seen items, fixed seed) so every variant is scored on "
            f"the same impressions. Variants built with augment() by {llm} on {limit}; NS = LLM titles, UP = user "
            "profiles (models use interest fusion), NG = 2 synthetic items per new user (training histories only), "
            "UP→NG = profile-conditioned generation, ALL = all three.\n\n"
            + markdown_table(["model", "variant", "test AUC", "test MRR", "test nDCG@10", "AUC new users",
                              "vs ORI (paired t, per impression)"], rows)
            + f"\nvs ORI: mean per-user difference variant − ORI over the test impressions, paired t-test; n.s. = "
              f"p ≥ {ALPHA}. {res['n_seeds']} seed(s) per run.\n"
            + _control_lines(res) + "\n"
            f"![GENRE test metrics]({rel}.png)\n\n"
            "LLM cost and quality, from the variants' manifests:\n\n"
            + markdown_table(["variant", "task", "LLM rows", "parse failures", "backend calls", "cache hits",
                              "prompt tokens", "completion tokens", "cost (USD)", "LLM wall s"], cost_rows)
            + (f"\nCost: every answer the variant needed (cached or not) at USD {price.get('prompt', 0):g} / "
               f"{price.get('completion', 0):g} per 1M prompt / completion tokens (the price table; llm.prices in "
               "the --llm-config YAML overrides it).\n" if any(price.values()) else
               "\nCost 0: no price is known for this model (local models are free; set llm.prices in the "
               "--llm-config YAML to price a hosted one).\n")
            + "\nAnswer quality and structured generation (answers decoded under the templates' output contracts; "
              "under a contract, format failures, out-of-vocabulary values and out-of-catalog items should all be 0):\n\n"
            + markdown_table(["variant", "task", "format failures", "out of vocabulary", "out of catalog",
                              "contract violations", "fallbacks", "constrained answers", "tok/s constrained",
                              "tok/s free"], contract_rows)
            + f"\nUP's models fuse the profiles in the {res.get('fusion_form', 'mlp')} form"
              + (" (a gate that starts at zero: each begins as its ORI model).\n" if res.get("fusion_form") == "gated"
                 else " (the paper's eq. (2)).\n")
            + "\n" + markdown_table(["variant", "step", "quality checks"], quality_rows) + "\n")


def _control_lines(res: dict[str, Any]) -> str:
    """UP∅'s meaning and UP − UP∅ per model, when the stage ran the control."""
    out = ""
    for control, (_, base) in CONTROLS.items():
        if base not in res.get("control_tests", {}):
            continue
        per_model = res["control_tests"][base]
        out += (f"\n{control}: {base}'s model (interest fusion) on ORI's data with every profile empty, built without "
                f"an LLM. {base} − {control}, what the profiles themselves add (AUC, paired t): "
                + "; ".join(f"{m} {_mark(t['auc'])}" for m, t in per_model.items()) + ".\n")
    return out


def _mark(t: dict[str, float]) -> str:
    p = t["t_pvalue"]
    if p != p:
        return f"{t['diff']:+.4f} (no test)"
    return f"{t['diff']:+.4f} " + (f"(p={p:.3g})" if p < ALPHA else f"n.s. (p={p:.2f})")


def _money(x: float) -> str:
    return "0" if x == 0 else (f"{x:.2g}" if x < 0.01 else f"{x:.4f}")


def _q(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x).replace("|", "/")
