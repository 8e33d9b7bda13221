"""RELAND experiments (Tian et al., RecSys'24): Table 2, Table 3, the ablation and the
seed-budget sweep, on ML-100K by default. Each subcommand writes
``<out-dir>/reland_<name>.md`` (Markdown table), ``.png`` (plot) and ``.json``.

The logic lives in ``genrecsys.stages.reland_tables`` (``run_command(RelandTables(...))``
from Python); this script parses arguments and prints. Every training run is one
``genrecsys train`` process (``--seeds N`` inside it), kept
under ``--runs-dir``; a run whose recorded command is unchanged is reused, and the LLM
answer cache makes a repeated pool cost 0 backend calls, so the subcommands share work
(Table 3's RELAND row is Table 2's SASRec RELAND run).

- ``table2``: ID-only vs +f_item vs RELAND (= +f_item + retrieved rationales) for each
  backbone; test NDCG/HR@10 and @20, mean ± std over seeds; paired t-test p-values of
  RELAND vs ID-only per user (each user's value averaged over seeds first,
  genrecsys.eval.compare).
- ``table3``: LLM inferences, prompt/completion tokens and time. RELAND: what the pool
  really took. KAR-like (one prompt per user + one per item) and SLIM-like (one prompt
  per training interaction): prompts rendered and counted exactly from the data with the
  backend's ``count_tokens``; ``--sample N`` prompts of every scheme are really run (no
  cache) to measure completion tokens and seconds per prompt, and totals are extrapolated
  from them (labelled "extrapolated" in the table).
- ``ablation``: RELAND vs random seed sampling (w/o a.s.), direct prompting (w/o r.p.)
  and no item features, each with the paired p-value against full RELAND.
- ``sweep``: seed budget 1, 5, 10, 20, 50, 100 % -> accuracy and tokens.

Full runs (hours of CPU; the paper's settings: 5 seeds, patience 10, LightGCN encoder
300 epochs; point --backend/--base-url/--model at any OpenAI-compatible server, or
leave the local embedded SmolLM2):

    python benchmarks/reland.py table2 --seeds 5 --threads 2
    python benchmarks/reland.py table3 --seeds 5 --sample 50
    python benchmarks/reland.py ablation --seeds 5
    python benchmarks/reland.py sweep --seeds 5

Smoke runs (what was run to check the script end to end; small budget, SmolLM2 with
24 answer tokens, 2 epochs, 1 seed):

    Q="--quick --models sasrec --max-epochs 2 --threads 1 --llm-max-tokens 24 \\
       --runs-dir /tmp/reland-bench/runs --out-dir /tmp/reland-bench/results"
    python benchmarks/reland.py table2 $Q --seed-fraction 0.02
    python benchmarks/reland.py table3 $Q --seed-fraction 0.02 --sample 4
    python benchmarks/reland.py ablation $Q --seed-fraction 0.02
    python benchmarks/reland.py sweep $Q --budgets 0.01 0.02
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from genrecsys.errors import GenrecsysError
from genrecsys.stages.reland_tables import BACKBONES, COMMANDS, VARIANTS, RelandTables, run_command


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        sp = sub.add_parser(name)
        sp.add_argument("--dataset", default="ml-100k")
        sp.add_argument("--models", nargs="+", default=None, help=f"default {' '.join(BACKBONES)} (sasrec for sweep)")
        sp.add_argument("--seeds", type=int, default=None, help="training seeds per run (default 5; 1 with --quick)")
        sp.add_argument("--max-epochs", type=int, default=None, help="default: each model's 300 with patience 10")
        sp.add_argument("--threads", type=int, default=2)
        sp.add_argument("--device", default="cpu", help="training device: cpu or cuda")
        sp.add_argument("--backend", default="local", choices=["local", "openai", "llamacpp"])
        sp.add_argument("--base-url", help="OpenAI-compatible server URL (with --backend openai)")
        sp.add_argument("--model", help="LLM model (local: HF dir or .gguf; openai: model name)")
        sp.add_argument("--llm-max-tokens", type=int, default=None, help="answer tokens per prompt (default 256)")
        sp.add_argument("--llm-batch-size", type=int, default=None)
        sp.add_argument("--seed-fraction", type=float, default=0.1, help="seed users (default 10%%)")
        sp.add_argument("--encoder-epochs", type=int, default=None, help="LightGCN encoder epochs (default 300)")
        sp.add_argument("--text-encoder", default=None,
                        help="item-text encoder for +f_item / RELAND (default: the embedded all-MiniLM-L6-v2)")
        sp.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="table2: the rows (default all)")
        sp.add_argument("--sample", type=int, default=20, help="table3: prompts per scheme really run")
        sp.add_argument("--budgets", type=float, nargs="+", help="sweep: seed fractions (default 1 5 10 20 50 100%%)")
        sp.add_argument("--quick", action="store_true", help="smoke settings: 1 seed, 2 epochs, 2 encoder epochs, sasrec")
        sp.add_argument("--runs-dir", default="/tmp/genrecsys-bench/reland")
        sp.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
        sp.add_argument("--cache-dir", default=os.environ.get("GENRECSYS_CACHE"))
    args = p.parse_args(argv)
    try:
        md = run_command(RelandTables(**vars(args)))
    except GenrecsysError as exc:
        raise SystemExit(f"reland.py {args.command}: {exc}") from None
    print(md)
    print(Path(args.out_dir) / f"reland_{args.command}.md")


if __name__ == "__main__":
    main()
