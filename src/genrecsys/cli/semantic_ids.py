"""`genrecsys semantic-ids build|show`: TIGER-style semantic IDs of a dataset's items
(`genrecsys.generative.semantic_ids`), and what a built directory holds."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from genrecsys.cli.args import at_least


def cmd_build(args: argparse.Namespace, cache_dir: Path) -> int:
    from genrecsys.config import DataConfig, ExperimentConfig
    from genrecsys.experiment import load_split
    from genrecsys.generative.quantize import QuantizeConfig
    from genrecsys.generative.semantic_ids import (
        SemanticIDConfig,
        build_semantic_ids,
        format_stats,
    )

    quant = {k: v for k, v in {"quantizer": args.quantizer, "levels": args.levels, "codebook_size": args.codebook_size,
                               "balanced": args.balanced, "seed": args.seed, "epochs": args.epochs}.items()
             if v is not None}
    cfg = SemanticIDConfig(source=args.source, from_run=args.from_run, text_encoder=args.text_encoder,
                           quantize=QuantizeConfig(**quant))
    # The leave-one-out split of `genrecsys train`'s defaults: its item rows are the ones a model trains on.
    split = load_split(ExperimentConfig(data=DataConfig(dataset=args.dataset, path=args.data_path)), cache_dir)
    sids = build_semantic_ids(split, cfg, cache_dir=cache_dir, out_dir=args.output_dir)
    print(format_stats(sids.stats), end="")
    if sids.reused:
        print(f"reused: {sids.directory} already held codes built from the same inputs "
              f"(fingerprint {sids.fingerprint}); nothing was trained")
    print(sids.directory)
    return 0


def cmd_show(args: argparse.Namespace, cache_dir: Path) -> int:
    import numpy as np

    from genrecsys.generative.semantic_ids import format_stats, load_semantic_ids

    sids = load_semantic_ids(args.directory)
    print(format_stats(sids.stats), end="")
    print(f"sizes per level {list(sids.sizes)}; fingerprint {sids.fingerprint}")
    levels = len(sids.sizes) - 1
    for raw in args.item or []:
        i = sids.index(raw)
        code = sids.codes[i]
        print(f"item {raw}  code {'-'.join(str(c) for c in code)}  {_title(sids, i)}")
        # The items that share the semantic part of the code: the code's neighbourhood.
        same = np.flatnonzero((sids.codes[1:, :levels] == code[:levels]).all(1)) + 1
        same = [j for j in same.tolist() if j != i]
        if same:
            shown = ", ".join(f"{sids.item_ids[j]} {_title(sids, j)}".strip() for j in same[:5])
            print(f"  shares {'-'.join(str(c) for c in code[:levels])} with {len(same)}: {shown}"
                  + (" ..." if len(same) > 5 else ""))
        prefix = np.flatnonzero(sids.codes[1:, 0] == code[0]) + 1
        print(f"  {len(prefix)} items start with {code[0]}")
    return 0


def _title(sids, i: int) -> str:
    return str(sids.titles[i]) if sids.titles is not None else ""


def add_semantic_ids_parser(sub, cache_dir: Callable[[argparse.Namespace], Path]) -> None:
    """Attach `semantic-ids build|show` to the top-level subparsers."""
    sid = sub.add_parser("semantic-ids", help="TIGER semantic IDs: items as short codes quantised from their vectors",
                         description="Quantise item vectors (text, a trained model's item embeddings, or both) into "
                                     "a few coarse-to-fine codes per item, plus a last level that makes every code "
                                     "unique. Similar items share a code prefix, which a generative retriever can "
                                     "use. The same inputs give the same codes, and a rebuild reuses them.")
    ssub = sid.add_subparsers(dest="semantic_ids_command", required=True, metavar="COMMAND")

    sp = ssub.add_parser("build", help="build semantic IDs; prints diagnostics, then the output directory",
                         description="Build semantic IDs for a dataset's items and print diagnostics (collisions "
                                     "before dedup, codebook usage and perplexity per level, reconstruction error). "
                                     "The output directory is the last line.")
    sp.set_defaults(fn=lambda a: cmd_build(a, cache_dir(a)))
    sp.add_argument("--dataset", default="ml-100k", help="registered name (default ml-100k) or a dataset directory")
    sp.add_argument("--data-path", help="local copy of the dataset files")
    sp.add_argument("--source", choices=["text", "cf", "both"], default="text",
                    help="item vectors: text = title, genres, year, abstract through the text encoder (default); "
                         "cf = item embeddings of --from-run; both = the two, L2-normalised, concatenated")
    sp.add_argument("--from-run", help="a finished `genrecsys train` run on the same dataset (for cf / both)")
    sp.add_argument("--text-encoder", help="sentence-transformers directory (default: the embedded all-MiniLM-L6-v2)")
    sp.add_argument("--quantizer", choices=["rkmeans", "rqvae"],
                    help="rkmeans = residual k-means (default, seconds); rqvae = TIGER's RQ-VAE")
    sp.add_argument("--levels", type=at_least(1), help="semantic levels before the dedup level (default 3)")
    sp.add_argument("--codebook-size", type=at_least(1),
                    help="codes per level (default: TIGER's 256 on catalogs of ~10k+ items, else the largest power "
                         "of two with >= 39 items per first-level code: 32 on ML-100K)")
    sp.add_argument("--balanced", action="store_true", default=None,
                    help="rkmeans: at most ceil(items / codes) items per centroid at every level")
    sp.add_argument("--epochs", type=at_least(1), help="rqvae: full-batch training epochs (default 300)")
    sp.add_argument("--seed", type=int, help="default 0")
    sp.add_argument("--output-dir", help="where to write (default: under the cache, named by the input fingerprint); "
                                         "one that holds codes of the same inputs is reused")

    sp = ssub.add_parser("show", help="diagnostics of a built directory, and the codes of given items",
                         description="Print a semantic IDs directory's diagnostics and, for --item, each item's code, "
                                     "title, and the items that share its semantic code.")
    sp.set_defaults(fn=lambda a: cmd_show(a, cache_dir(a)))
    sp.add_argument("directory", help="a directory written by `genrecsys semantic-ids build`")
    sp.add_argument("--item", nargs="+", metavar="RAW_ID", help="raw item id(s) to show")

