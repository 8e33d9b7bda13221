"""GENRE (Liu et al.) on ML-100K: build the augmented variants through ``augment()`` and
reproduce the shape of Tables 1, 6, 8, 10 and Fig. 7 with the eight news / CTR models.

Setting. ML-100K, chronological leave-one-out, constructed impressions (the clicked item
+ 24 never-seen items, fixed seed 0: every model, seed and variant is scored on the same
impressions, except UP→NG, whose removed users take their impressions with them). New
users are simulated as in GENRE (issue 7): 20% of the users keep only their 1-3 most
recent training items (`genrecsys.data.coldstart`, seed 0); the truncation is baked into
the ORI dataset directory, so the LLM prompts and the models see the same short histories.
New users are then those with < 5 history items at evaluation (GENRE §3.4), the rest warm.

Variants (one ``augment()`` call each on ORI; the LLM cache makes a rerun free):
  ORI    the cold-start ML-100K
  NS     news summarizer: LLM titles
  UP     user profiler: topics / regions (models train with ``interest_fusion=true``)
  NG     personalized generator: 2 synthetic items per new user (training histories only)
  UP→NG  chain: profiles in the generator's prompt; users without a valid profile removed
  ALL    summarizer titles + profiles + chain items, every user kept
  NG-1, NG-4  1 and 4 items per new user (Fig. 7; NG-1 is free after NG: same first prompt)
  UP∅    control, no LLM: ORI with empty topic / region columns, trained like UP (interest
         fusion on). UP's fusion layer changes the model; UP − UP∅ is what the profiles add

Subcommands, each writing <name>.md, <name>.png and <name>.json to --results-dir:

    export GENRECSYS_CACHE=/tmp/gcache HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    # 1. the variants (full: every item / user; --limit N caps the LLM rows of each task)
    python benchmarks/genre.py variants --variants-dir runs/genre/variants \\
        --backend openai --base-url http://127.0.0.1:8000/v1 --model gpt-4o-mini   # or the embedded SmolLM2
    # 2. the experiments (reuse each other's runs under --runs-dir)
    python benchmarks/genre.py table10 --variants-dir runs/genre/variants --runs-dir runs/genre/runs \\
        --seeds 5 --max-epochs 20 --threads 1 --jobs 2   # --variants ORI NS ... : a subset of the six
    python benchmarks/genre.py table6 --variants-dir runs/genre/variants --runs-dir runs/genre/runs --seeds 5
    python benchmarks/genre.py fig7 --variants-dir runs/genre/variants --runs-dir runs/genre/runs --seeds 5
    # 3. from what 1-2 wrote: cost and CCR (needs table10.json), dataset statistics
    python benchmarks/genre.py table8 --variants-dir runs/genre/variants --price-as gpt-3.5-turbo
    python benchmarks/genre.py table1 --variants-dir runs/genre/variants

    # smoke test of the whole chain (tiny; minutes on a CPU): add --quick to every command
    python benchmarks/genre.py variants --quick --variants-dir /tmp/genre/v --results-dir /tmp/genre/r

``--jobs N`` trains N runs (variant x model x seed) at a time, each in its own process with
``--threads`` threads; a finished run is never trained again, so an interrupted command
resumes where it stopped. ``--earlier DIR/table10.json`` (table10, table6) copies the models of
a table written before, under the same protocol, whose runs are not on disk any more, so a
table can grow by model without retraining the others.

Several processes (or machines) may share one --runs-dir: each run is locked while it trains,
so a run another process is training is left to it and awaited. ``train --variants NS UP
--models din`` trains exactly those runs (``table10`` always trains ORI first as its base) and
waits for other processes' runs only once it has trained everything free, so the same ``train``
command started on several cores or machines divides the work.

``--quick`` = ``--limit 20 --models nrms --seeds 1 --max-epochs 1`` and short LLM answers,
unless those flags are given. Significance: every variant is compared with ORI by paired
tests over the test impressions (one per user; each user's value averaged over seeds
first, `genrecsys.eval.compare`); a difference with p >= 0.05 is printed "n.s.".

Only text-based models can use synthetic items (their news encoder reads the items' own
text); ID-based models (Pop, SASRec) would ignore them, so they are not part of this table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from genrecsys.errors import GenrecsysError
from genrecsys.stages.genre_tables import (COMMANDS, CONTROLS, FUSION_FORMS, MODELS, QUICK, TABLE10, GenreTables,
                                           run_command)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=list(COMMANDS))
    p.add_argument("--variants-dir", default="runs/genre/variants")
    p.add_argument("--runs-dir", default="runs/genre/runs")
    p.add_argument("--results-dir", default="benchmarks/results/genre")
    p.add_argument("--cache-dir", default=os.environ.get("GENRECSYS_CACHE"))
    p.add_argument("--models", nargs="+", default=None, choices=MODELS)
    p.add_argument("--variants", nargs="+", default=[*TABLE10, *CONTROLS], choices=[*TABLE10, *CONTROLS],
                   help="table10: the variants to train and compare with ORI (default all six and the UP∅ control); "
                        "train: the variants to train")
    p.add_argument("--earlier", default=None, metavar="JSON",
                   help="table10/table6: a <command>.json written before under the same protocol; its models that "
                        "are not in --models are copied into the table (for runs no longer on disk)")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--patience", type=int, default=3, help="validations without AUC gain before stopping")
    p.add_argument("--fusion-form", default="mlp", choices=FUSION_FORMS,
                   help="UP's interest fusion: mlp (the paper's eq. (2), the committed tables) or gated "
                        "(starts as the ORI model; runs kept under <variant>-gated)")
    p.add_argument("--warm-start", action="store_true",
                   help="with --fusion-form gated: start each UP run from the same seed's trained ORI run, "
                        "kept unless an epoch beats it on validation (runs under <variant>-gated-warm)")
    p.add_argument("--lr", type=float, default=None, help="override the models' learning rate")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    p.add_argument("--jobs", type=int, default=1,
                   help="training runs (variant x model x seed) at a time, one process each; e.g. --jobs 2 "
                        "--threads 1 on 2 cores. Results do not depend on it")
    p.add_argument("--device", default="cpu", help="training device: cpu or cuda (runs on disk are reused either way)")
    p.add_argument("--limit", type=int, default=None, help="LLM rows per task (items / users); default all")
    p.add_argument("--max-tokens", type=int, default=None, help="LLM answer cap for every task")
    p.add_argument("--backend", default="local", choices=["local", "openai", "llamacpp"])
    p.add_argument("--base-url", default=None, help="an OpenAI-compatible server (with --backend openai)")
    p.add_argument("--model", default=None, help="LLM: a model name (openai) or a model path; default SmolLM2")
    p.add_argument("--price-as", default=None, help="table8: price the tokens at this model's list price")
    p.add_argument("--quick", action="store_true", help="smoke test: " + json.dumps(QUICK))
    args = p.parse_args(argv)
    try:
        out = run_command(GenreTables(**vars(args)))
    except GenrecsysError as exc:
        raise SystemExit(f"genre.py {args.command}: {exc}") from None
    print(out["markdown"])
    print(f"wrote {os.path.join(args.results_dir, args.command)}.md, .png, .json in {out['env']['wall_s']} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
