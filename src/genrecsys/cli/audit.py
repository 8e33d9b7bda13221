"""`genrecsys audit RUN|VARIANT`: trust checks of the LLM features in a RELAND run (pool
format and grounding, rationale leakage) or a GENRE variant (format failures,
out-of-vocabulary and out-of-catalog outputs per augmentation step); with ``--injection``
and ``--sensitivity`` also the prompts' own checks (genrecsys.stages.trust) on the target's
dataset, answered by the run's LLM (flags override it)."""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from genrecsys.cli.args import at_least
from genrecsys.cli.llm import add_llm_flags
from genrecsys.errors import GenrecsysError

VARIANT_FIELDS = ("rows", "parse_failures", "format_failures", "out_of_vocabulary", "out_of_catalog",
                  "contract_violations", "fallbacks")


def audit_run(run: Path, cache_dir: Path) -> dict:
    import pandas as pd

    from genrecsys.config import load_experiment
    from genrecsys.experiment import load_split
    from genrecsys.reasoning.audit import leakage, pool_quality
    from genrecsys.reasoning.run import ASSIGNMENT, POOL_DIR, RELAND_DIR

    d = next((p for p in [run, *sorted(run.glob("seed-*"))] if (p / RELAND_DIR / ASSIGNMENT).is_file()), None)
    if d is None:
        raise GenrecsysError(f"{run}: not a RELAND run (no {RELAND_DIR}/{ASSIGNMENT}) and not a GENRE variant "
                             f"(no manifest.json)")
    split = load_split(load_experiment(d / "config.yaml"), cache_dir)
    out: dict = {"run": str(run), "kind": "reland"}
    pool = d / RELAND_DIR / POOL_DIR / "pool.parquet"
    if pool.is_file():
        genres = sorted({g for x in split.dataset.items.get("genres", []) for g in str(x).split("|") if g})
        out["pool"] = pool_quality(pd.read_parquet(pool), genres)
    out["leakage"], _ = leakage(split, pd.read_parquet(d / RELAND_DIR / ASSIGNMENT))
    return out


def audit_variant(variant: Path) -> dict:
    manifest = json.loads((variant / "manifest.json").read_text())
    steps = [{"task": s.get("task"), **{f: s.get(f, 0) for f in VARIANT_FIELDS}} for s in manifest.get("steps", [])]
    return {"variant": str(variant), "kind": "genre", "name": manifest.get("name"), "steps": steps}


def format_audit(res: dict) -> str:
    from genrecsys.eval.report import markdown_table

    if res["kind"] == "genre":
        rows = [[s["task"], *(s[f] for f in VARIANT_FIELDS)] for s in res["steps"]]
        return f"## {res['variant']}: LLM outputs per step\n\n" + markdown_table(["step", *VARIANT_FIELDS], rows)
    text = f"## {res['run']}: RELAND trust checks\n\n"
    if "pool" in res:
        text += markdown_table(["pool", "value"], [[k, f"{v:.3f}" if isinstance(v, float) else v]
                                                   for k, v in res["pool"].items()]) + "\n"
    lk = res["leakage"]
    text += (f"Rationale leakage: {lk['leaking']} of {lk['explanations']} explanations served to a user other than "
             f"their seed ({lk['leak_rate']:.1%}) name items from the seed user's history that the user never "
             f"interacted with ({lk['leaked_items_per_leaking']:.1f} such items each). "
             "`--redact-leaks` on `recommend` / `serve` removes them from served explanations.\n")
    return text


def _trust_inputs(target: Path, args: argparse.Namespace, cache_dir: Path):
    """(split, LLM) of the prompt checks: the target's dataset; the RELAND run's LLM
    settings, or the default LLM for a variant, with the --llm-* flags on top."""
    from dataclasses import asdict

    from genrecsys.cli.llm import llm_settings
    from genrecsys.config import DataConfig, ExperimentConfig, LLMConfig, from_dict, load_experiment
    from genrecsys.experiment import load_split
    from genrecsys.llm.client import LLM

    base: dict = {}
    if (target / "manifest.json").is_file():
        cfg = ExperimentConfig(model="pop", data=DataConfig(dataset=str(target)))
    else:
        d = next((p for p in [target, *sorted(target.glob("seed-*"))] if (p / "config.yaml").is_file()), None)
        if d is None:
            raise GenrecsysError(f"{target}: not a run directory (no config.yaml)")
        cfg = load_experiment(d / "config.yaml")
        if cfg.reland is not None:
            base = asdict(cfg.reland.llm)
    llm_cfg = from_dict(LLMConfig, llm_settings(args, "llm-", base), "llm")
    return load_split(cfg, cache_dir), LLM(llm_cfg, cache_dir, progress=not args.json)


def cmd_audit(args: argparse.Namespace, cache_dir: Path) -> int:
    target = Path(args.target)
    if not target.is_dir():
        raise GenrecsysError(f"{target}: no such run or variant directory")
    res = audit_variant(target) if (target / "manifest.json").is_file() else audit_run(target, cache_dir)
    text = [format_audit(res)]
    if args.injection or args.sensitivity:
        from genrecsys.stages.trust import (TrustSettings, format_injection, format_sensitivity, run_injection,
                                            run_sensitivity)

        settings = TrustSettings(rows=args.rows, users=args.users)
        split, llm = _trust_inputs(target, args, cache_dir)
        try:
            if args.injection:
                res["injection"] = run_injection(llm, split, settings, red_team=args.red_team)
                text.append(format_injection(res["injection"]))
            if args.sensitivity:
                res["sensitivity"] = run_sensitivity(llm, split, settings)
                text.append(format_sensitivity(res["sensitivity"]))
        finally:
            llm.close()
    print(json.dumps(res, indent=2, default=float) if args.json else "\n".join(text))
    return 0


def add_audit_parser(sub, cache_dir: Callable[[argparse.Namespace], Path]) -> None:
    sp = sub.add_parser("audit", help="trust checks of the LLM features of a RELAND run or a GENRE variant",
                        description="RELAND run: reasoning-pool format and grounding (unparsed, out-of-catalog items, "
                                    "out-of-vocabulary categories) and rationale leakage (explanations naming items "
                                    "of the seed user's history that the receiving user never had). GENRE variant: "
                                    "format failures, out-of-vocabulary and out-of-catalog outputs per step.")
    sp.set_defaults(fn=lambda a: cmd_audit(a, cache_dir(a)))
    sp.add_argument("target", metavar="RUN|VARIANT")
    sp.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    g = sp.add_argument_group("prompt checks (answered by an LLM: the run's, or the embedded SmolLM2)")
    g.add_argument("--injection", action="store_true",
                   help="red-team item texts through the summarizer, profiler and RELAND prompts: how often answers "
                        "follow them, with the data fence and the output contract each on and off")
    g.add_argument("--sensitivity", action="store_true",
                   help="FaiRLLM-style: profiler and RELAND answers with and without a gender / age in the prompt")
    g.add_argument("--red-team", metavar="FILE", help="payload file (default: the shipped genrecsys/llm/injection.yaml)")
    g.add_argument("--rows", type=at_least(1), default=3, help="rows per prompt attacked by each payload (default 3)")
    g.add_argument("--users", type=at_least(1), default=10, help="users of the sensitivity check (default 10)")
    add_llm_flags(g, "llm-")
