"""Cost curves to 100M interactions: data prep, s/epoch, full-ranking evaluation and peak
memory for BPR, LightGCN and SASRec on synthetic MovieLens-like data, and RELAND's LLM
cost against per-user and per-interaction prompting at millions of users.

    python benchmarks/scale.py --sizes 1000000 10000000 100000000 --threads 2 \
        --data-root /tmp/scale --out benchmarks/results/scale.json

Each (size, model) runs in a fresh process (its own peak RSS). Finished cells are kept in
--out and skipped when the command is run again, so a killed run continues. The logic is
genrecsys.stages.scale; this file parses arguments and prints.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from genrecsys.eval.report import run_environment

DEFAULT_RELAND = Path(__file__).parent / "results" / "reland" / "contracts-1seed" / "reland_table2.json"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 1e8], help="interactions per dataset")
    p.add_argument("--models", nargs="+", default=["bpr", "lightgcn", "sasrec"])
    p.add_argument("--data-root", default="/tmp/genrecsys-scale", help="where the synthetic datasets are written (reused)")
    p.add_argument("--max-steps", type=int, default=200, help="training batches timed per epoch at most (default 200)")
    p.add_argument("--eval-users", type=int, default=2000, help="test users ranked against all items, then scaled")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reland-from", default=str(DEFAULT_RELAND),
                   help="a benchmarks/reland.py table2 JSON: its RELAND run's LLM accounting gives the per-call figures")
    p.add_argument("--user-counts", type=float, nargs="+", default=[1e6, 1e7, 1e8], help="users for the RELAND cost model")
    p.add_argument("--out", default=None, help="JSON of every cell (also the resume state)")
    args = p.parse_args(argv)
    if args.max_steps < 1 or args.eval_users < 1 or args.threads < 1 or min(args.sizes) < 1000:
        p.error("--max-steps, --eval-users and --threads must be >= 1 and every size >= 1000")

    from genrecsys.stages.scale import (PerCall, ScaleSettings, dataset_dir, measure_in_child, reland_cost_rows,
                                        reland_cost_table, scale_table)

    settings = ScaleSettings(max_steps=args.max_steps, eval_users=args.eval_users, threads=args.threads, seed=args.seed)
    out_path = Path(args.out) if args.out else None
    state = json.loads(out_path.read_text()) if out_path and out_path.is_file() else {}
    if state.get("settings") not in (None, asdict(settings)):
        raise SystemExit(f"{out_path}: written with other settings {state['settings']}; use another --out")
    state.setdefault("cells", [])
    state.update(settings=asdict(settings), argv=sys.argv, **run_environment(),
                 generation_s=state.get("generation_s", {}))
    done = {(c["model"], c["interactions"]) for c in state["cells"]}

    def save() -> None:
        if out_path:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(state, indent=2))

    for size in sorted(int(s) for s in args.sizes):
        data, gen_s = dataset_dir(args.data_root, size, args.seed)
        if gen_s is not None:
            state["generation_s"][str(size)] = gen_s
            print(f"== wrote {data} in {gen_s:.1f} s", file=sys.stderr, flush=True)
        for model in args.models:
            if (model, size) in done:
                continue
            t = time.perf_counter()
            row = measure_in_child(data, model, settings)
            if "error" in row:
                row["interactions"] = size
                print(f"== {model} at {size:,}: {row['error']}", file=sys.stderr, flush=True)
            else:
                print(f"== {model} at {size:,}: epoch {row['epoch_s']:.1f} s ({row['measured']}), eval {row['eval_s']:.1f} s, "
                      f"peak {row['peak_rss_mb']:,.0f} MB ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
            state["cells"].append(row)
            save()

    cells = sorted((c for c in state["cells"] if c["model"] in args.models), key=lambda c: (c["model"], c["interactions"]))
    text, summary = scale_table(cells)
    state["summary"] = summary
    print(text)
    if args.reland_from and Path(args.reland_from).is_file():
        runs = json.loads(Path(args.reland_from).read_text())["runs"]
        llm = next((v["llm"] for k, v in runs.items() if k.endswith("/RELAND") and v.get("llm")), None)
        if llm is None:
            raise SystemExit(f"{args.reland_from}: no RELAND run with LLM accounting")
        per_call = PerCall.from_reland_llm(llm, source=f"{args.reland_from}, RELAND seed prompts, {llm['calls']} calls")
        rows = reland_cost_rows([int(u) for u in args.user_counts], per_call)
        state["reland_cost"] = {"per_call": asdict(per_call), "rows": rows}
        print("\n" + reland_cost_table(rows, per_call))
    save()


if __name__ == "__main__":
    main()
