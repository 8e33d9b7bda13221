"""`genrecsys augment ...`: GENRE augmentation tasks that write dataset variants, and
`augment show` to read what the LLM wrote for one item or user."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from genrecsys.cli.args import at_least
from genrecsys.errors import GenrecsysError

TASK_HELP = {
    "summarize": "news summarizer (GENRE 3.2): an LLM title per item replaces `title` (original kept in `title_original`)",
    "profile": "user profiler (GENRE 3.3): ranked `topics` and `regions` per user from closed vocabularies",
    "generate": "personalized generator (GENRE 3.4): N synthetic items per new user, kept outside the catalogue",
    "chain": "profiler -> generator (GENRE 3.5): profile topics in the prompt; users without a valid profile removed",
    "all": "ALL (GENRE App. B): summarizer titles + profiles + chain items; every user kept",
}
USES = {"summarize": ("summarize",), "profile": ("profile",), "generate": ("generate",),
        "chain": ("profile", "generate"), "all": ("summarize", "profile", "generate")}


def augment_config(args: argparse.Namespace):
    """Task settings from the flags; each task reads its part."""
    from dataclasses import replace

    from genrecsys.augment import (
        AugmentConfig,
        GenerateConfig,
        ProfileConfig,
        SummarizeConfig,
        Vocabulary,
    )

    users = tuple(args.users) if getattr(args, "users", None) else None
    cfg = AugmentConfig(summarize=SummarizeConfig(limit=args.limit),
                        profile=ProfileConfig(limit=args.limit, history_cap=args.history_cap,
                                              holdout_last=args.holdout_last,
                                              vocabulary=None if args.vocabulary == "auto" else Vocabulary.named(args.vocabulary)),
                        generate=GenerateConfig(limit=args.limit, history_cap=args.history_cap,
                                                holdout_last=args.holdout_last, n_items=args.n_items,
                                                min_history=args.new_user_min, max_history=args.new_user_max,
                                                users=users))
    if args.max_tokens:
        cfg = AugmentConfig(summarize=replace(cfg.summarize, max_tokens=args.max_tokens),
                            profile=replace(cfg.profile, max_tokens=args.max_tokens),
                            generate=replace(cfg.generate, max_tokens=args.max_tokens))
    return cfg


def cmd_augment_task(args: argparse.Namespace, cache_dir: Path) -> int:
    from genrecsys.augment import augment, load_variant
    from genrecsys.cli.llm import exit_interrupted, llm_config
    from genrecsys.llm.client import LLM

    if args.new_user_min < 1 or args.new_user_max < args.new_user_min:
        raise GenrecsysError("need 1 <= --new-user-min <= --new-user-max")
    cfg = augment_config(args)
    llm = LLM(llm_config(args), cache_dir, progress=not args.no_progress)
    try:
        out = augment(args.task, args.dataset, args.output, llm, cfg, cache_dir=cache_dir)
    except KeyboardInterrupt:
        # the variant is written only at the end, so nothing is half-written
        exit_interrupted(llm, " and no variant was written")
    finally:
        llm.close()
    m = load_variant(out).manifest
    summary = {k: m[k] for k in ("task", "round", "rows", "parse_failures", "requests", "cache_hits", "backend_calls",
                                 "prompt_tokens", "completion_tokens", "cost", "cost_total", "wall_s")}
    summary.update(output=str(out), quality=m["quality"])
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{m['task']} round {m['round']}: rows {m['rows']}, parse failures {m['parse_failures']} | cache hits "
          f"{m['cache_hits']}, backend calls {m['backend_calls']} | tokens {m['prompt_tokens']} in / "
          f"{m['completion_tokens']} out | cost ${m['cost']:.4f} (all answers ${m['cost_total']:.4f}) | "
          f"{m['wall_s']:.1f} s", file=sys.stderr)
    for task, q in m["quality"].items():
        print(f"  {task}: " + ", ".join(f"{k} {v}" for k, v in q.items()), file=sys.stderr)
    for step in m["steps"]:
        if step["task"] in ("generate", "chain") and step["rows"] == 0:
            print(f"  note: {step['task']} found no new users ({args.new_user_min}-{args.new_user_max} visible history "
                  "items); widen --new-user-max or name --users", file=sys.stderr)
    print(out)
    return 0


def _cell(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return value


def show(variant: str | Path, item: str | None = None, user: str | None = None) -> dict[str, Any]:
    """What a variant holds for one item or user: its row, its synthetic items, and the raw
    LLM answers of the round that made it."""
    from genrecsys.augment import load_variant, read_artefacts

    v = load_variant(variant)
    key, table = ("item", v.dataset.items) if item is not None else ("user", v.dataset.users)
    wanted = item if item is not None else user
    rows = table[table[key].astype(str) == str(wanted)]
    synthetic = v.synthetic[v.synthetic["item"] == wanted] if item is not None else v.synthetic[v.synthetic["user"] == wanted]
    if rows.empty and synthetic.empty:
        raise GenrecsysError(f"{variant}: no {key} {wanted!r}")
    out: dict[str, Any] = {key: wanted, "variant": str(variant), "task": v.manifest.get("task"),
                           "round": v.manifest.get("round")}
    if not rows.empty:
        out["row"] = {c: _cell(val) for c, val in rows.iloc[0].items()}
    if user is not None:
        from genrecsys.augment.inputs import user_histories

        titles = v.dataset.titles()
        out["history"] = [{"item": i, "title": titles.get(i, "")} for i in user_histories(v.dataset, cap=30).get(user, [])]
    out["synthetic_items"] = [{c: _cell(val) for c, val in r.items()} for _, r in synthetic.iterrows()]
    ids = {str(wanted)}
    out["llm_answers"] = [a for a in read_artefacts(variant) if str(a.get("id")) in ids or a.get("item") in ids]
    return out


def cmd_augment_show(args: argparse.Namespace, cache_dir: Path) -> int:
    info = show(args.variant, item=args.item, user=args.user)
    if args.json:
        print(json.dumps(info, ensure_ascii=False, default=str))
        return 0
    head = f"item {info['item']}" if "item" in info else f"user {info['user']}"
    print(f"{head}  ({info['variant']}, task {info['task']}, round {info['round']})")
    for k, v in (info.get("row") or {}).items():
        if k not in ("item", "user"):
            print(f"  {k:<18} {v}")
    if info.get("history"):
        print("  history (most recent first, held-out clicks hidden):")
        for h in info["history"]:
            print(f"    {h['item']:>10}  {h['title']}")
    if info["synthetic_items"]:
        print("  synthetic items:")
        for s in info["synthetic_items"]:
            print(f"    {s['item']}  ({s['category'] or '-'}) {s['title']} | {s['abstract']}")
    for a in info["llm_answers"]:
        status = f"error: {a['error']}" if a.get("error") else "ok"
        which = a["task"] + (f" #{a['k']}" if a.get("k") else "")
        print(f"  LLM [{which}] {status}{' (cached)' if a.get('cached') else ''}:")
        print("    " + (a.get("text") or "").strip().replace("\n", "\n    "))
    return 0


def _llm_flags(sp: argparse.ArgumentParser) -> None:
    from genrecsys.cli.llm import add_llm_flags, add_ray_flags

    g = sp.add_argument_group("LLM (same flags as `genrecsys llm generate`)")
    add_llm_flags(g)
    g.add_argument("--max-tokens", type=at_least(1), help="tokens per answer (default per task: 48 / 64 / 160)")
    g.add_argument("--max-reasks", type=at_least(0), help="re-asks of an answer that does not parse (default 1)")
    g.add_argument("--prices", help="YAML price table: model: {prompt: USD/1M, completion: USD/1M}")
    add_ray_flags(g)


def add_augment_parser(sub, cache_dir: Callable[[argparse.Namespace], Path]) -> None:
    """Attach `augment summarize|profile|generate|chain|all|show` to the top-level subparsers."""
    aug = sub.add_parser("augment", help="GENRE: LLM-augmented dataset variants (titles, profiles, synthetic items)",
                         description="Write a new dataset variant (the input is never modified) whose titles, user "
                                     "profiles or synthetic items come from an LLM. A variant loads like any dataset "
                                     "(`genrecsys train --dataset VARIANT_DIR`) and can be the --dataset of the next "
                                     "round. Reruns are answered from the LLM cache; Ctrl-C leaves no partial variant.")
    asub = aug.add_subparsers(dest="augment_command", required=True, metavar="COMMAND")

    for task, help_text in TASK_HELP.items():
        sp = asub.add_parser(task, help=help_text, description=help_text)
        sp.set_defaults(fn=lambda a, _t=task: cmd_augment_task(a, cache_dir(a)), task=task)
        sp.add_argument("--dataset", required=True, help="registered name (ml-100k), dataset or MIND directory, or a variant")
        sp.add_argument("--output", required=True, help="variant directory to write (replaced if it is an older variant)")
        sp.add_argument("--limit", type=at_least(1), help="only the first N items / users per step (the rest stay unchanged)")
        uses = USES[task]
        # defaults exist for every flag, so one config builder serves all tasks
        sp.set_defaults(history_cap=30, holdout_last=2, vocabulary="auto", n_items=2, new_user_min=1, new_user_max=4,
                        users=None)
        if "profile" in uses or "generate" in uses:
            sp.add_argument("--history-cap", type=at_least(1), default=30, help="most recent history titles per prompt (default 30)")
            sp.add_argument("--holdout-last", type=at_least(0), default=2,
                            help="hide each user's last N interactions from prompts (default 2: leave-one-out valid + "
                                 "test; datasets with impressions hide dev/test clicks instead)")
        if "profile" in uses:
            sp.add_argument("--vocabulary", choices=["auto", "news", "movies"], default="auto",
                            help="closed topic/region lists: news = GENRE's 19 topics + US states; movies = MovieLens "
                                 "genres + themes; auto = news if the items have a `category` column")
        if "generate" in uses:
            sp.add_argument("--n-items", type=at_least(1), default=2, help="synthetic items per new user (default 2)")
            sp.add_argument("--new-user-min", type=at_least(1), default=1, help="new users have at least this many history items")
            sp.add_argument("--new-user-max", type=at_least(1), default=4, help="... and at most this many (default 4)")
            if task == "generate":
                sp.add_argument("--users", nargs="+", help="generate for these users instead of the new users")
        _llm_flags(sp)
        sp.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
        sp.add_argument("--no-progress", action="store_true")

    sp = asub.add_parser("show", help="what a variant holds for one item or user, with the raw LLM answers",
                         description="Show an item's titles or a user's profile, history and synthetic items, and the "
                                     "LLM answers they came from.")
    sp.set_defaults(fn=lambda a: cmd_augment_show(a, cache_dir(a)))
    sp.add_argument("variant", help="a variant directory written by `genrecsys augment`")
    who = sp.add_mutually_exclusive_group(required=True)
    who.add_argument("--item", help="item id (a synthetic item id works too)")
    who.add_argument("--user", help="user id")
    sp.add_argument("--json", action="store_true")
