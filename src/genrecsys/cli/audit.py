"""`genrecsys audit RUN|VARIANT`: trust checks of the LLM features in a RELAND run (pool
format and grounding, rationale leakage) or a GENRE variant (format failures,
out-of-vocabulary and out-of-catalog outputs per augmentation step)."""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

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


def cmd_audit(args: argparse.Namespace, cache_dir: Path) -> int:
    target = Path(args.target)
    if not target.is_dir():
        raise GenrecsysError(f"{target}: no such run or variant directory")
    res = audit_variant(target) if (target / "manifest.json").is_file() else audit_run(target, cache_dir)
    print(json.dumps(res, indent=2, default=float) if args.json else format_audit(res))
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
