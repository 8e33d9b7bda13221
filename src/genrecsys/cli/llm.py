"""`genrecsys llm ...`: bulk generation from JSONL, the cache, the templates."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from genrecsys.cli.args import NON_NEGATIVE, POSITIVE, at_least, between
from genrecsys.errors import GenrecsysError
from genrecsys.files import building_file


def _read_rows(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """Input rows, validated before a single prompt is sent."""
    if not path.is_file():
        raise GenrecsysError(f"input file not found: {path}")
    try:
        return _scan_rows(path, limit)
    except UnicodeDecodeError as exc:
        raise GenrecsysError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _scan_rows(path: Path, limit: int | None) -> list[dict[str, Any]]:
    rows, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:  # JSONDecodeError, or an integer too long for Python
                raise GenrecsysError(f"{path}:{lineno}: not a JSON object ({getattr(exc, 'msg', str(exc)[:80])})") from None
            if not isinstance(row, dict):
                raise GenrecsysError(f"{path}:{lineno}: each line must be a JSON object, got {type(row).__name__}")
            if "id" not in row:
                raise GenrecsysError(f"{path}:{lineno}: row has no \"id\"")
            rid = json.dumps(row["id"])
            if rid in seen:
                raise GenrecsysError(f"{path}:{lineno}: duplicate id {row['id']!r}")
            seen.add(rid)
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    if not rows:  # before any model loads: an empty job is a mistake, not a success
        raise GenrecsysError(f"{path}: no input rows (empty file)")
    return rows


def _parser(args: argparse.Namespace):
    from functools import partial

    from genrecsys.llm import parse

    if args.parse == "none":
        return None
    if args.parse == "json":
        return parse.parse_json
    if args.parse == "value":
        return parse.parse_bracketed_value
    if args.parse == "title":  # the summarizer's parser: [title] or a labelled / quoted line, checked as a title
        from genrecsys.augment.summarize import parse_title

        return parse_title
    if args.parse == "numbered":
        return parse.parse_numbered_list
    if not args.fields:
        raise GenrecsysError("--parse bracketed needs --fields (e.g. --fields topics region)")
    return partial(parse.parse_bracketed, fields=args.fields)


# flag -> (LLMConfig field, argparse keywords): the backend flags every LLM-using command shares.
# `train` and `main` name them --llm-*, since there --model, --threads, ... are the recommender's.
LLM_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "backend": ("backend", {"choices": ["local", "openai", "llamacpp"],
                            "help": "default local: the embedded SmolLM2-135M"}),
    "model": ("model", {"help": "local: HF directory or .gguf (default: embedded SmolLM2-135M); openai: model name"}),
    "adapter": ("adapter", {"help": "local: a finished tallrec/llmsid run whose LoRA adapter the model answers with "
                                    "(the LLM fine-tuned on the catalog)"}),
    "base-url": ("base_url", {"help": "openai backend: server URL, e.g. http://127.0.0.1:8000/v1"}),
    "api-key-env": ("api_key_env", {"help": "env variable holding the API key (default OPENAI_API_KEY)"}),
    "concurrency": ("concurrency", {"type": int, "help": "openai: requests in flight (default 8)"}),
    "batch-size": ("batch_size", {"type": int, "help": "local: prompts per batch (default 8)"}),
    "threads": ("threads", {"type": int, "help": "local: torch threads"}),
    "device": ("device", {"help": "local: cpu, cuda or auto"}),
    "timeout": ("timeout_s", {"type": float, "help": "seconds per HTTP request"}),
    "max-context": ("max_context", {"type": int, "help": "context window in tokens (default: the model's)"}),
    "cache": ("cache", {"help": "SQLite answer cache (default <cache dir>/llm/cache.sqlite); reruns resume from it"}),
    "templates-dir": ("templates_dir", {"help": "directory of user templates overriding built-ins by name"}),
    "grammar-engine": ("grammar_engine", {"choices": ["xgrammar", "llguidance"],
                                          "help": "local: the library that enforces output contracts (default xgrammar)"}),
    "structured-outputs": ("structured_outputs", {"choices": ["response_format", "vllm", "off"],
                                                  "help": "openai: how contracts travel: response_format (OpenAI, JSON "
                                                          "only), vllm (structured_outputs) or off"}),
}


def add_llm_flags(g, prefix: str = "") -> None:
    """`--{prefix}config`, `--{prefix}<flag>` for each of LLM_FLAGS, and `--allow-remote` (never prefixed)."""
    g.add_argument(f"--{prefix}config", help="YAML with LLM settings (an `llm:` section or the whole file)")
    for flag, (_, kw) in LLM_FLAGS.items():
        g.add_argument(f"--{prefix}{flag}", **kw)
    g.add_argument("--allow-remote", action="store_true", help="allow sending prompts to a non-loopback server")
    g.add_argument("--no-contract", action="store_true",
                   help="decode without the templates' output contracts (for comparisons; answers are cached apart)")


def llm_flag_dests(prefix: str = "") -> list[str]:
    """The argparse attribute names of add_llm_flags' valued flags (config first)."""
    return [(prefix + flag).replace("-", "_") for flag in ("config", *LLM_FLAGS)]


def llm_settings(args: argparse.Namespace, prefix: str = "", base: dict[str, Any] | None = None) -> dict[str, Any]:
    """LLMConfig fields: ``base`` (e.g. a YAML section), then the --{prefix}config file (its
    `llm:` section or the whole file), then the add_llm_flags flags that were given."""
    from genrecsys.config import load_yaml

    config, *dests = llm_flag_dests(prefix)
    raw = dict(base or {})
    if getattr(args, config):
        loaded = load_yaml(getattr(args, config))
        raw.update(loaded.get("llm", loaded))
    for (field, _), dest in zip(LLM_FLAGS.values(), dests):
        if getattr(args, dest) is not None:
            raw[field] = getattr(args, dest)
    if args.allow_remote:
        raw["allow_remote"] = True
    if getattr(args, "no_contract", False):
        raw["contracts"] = False
    return raw


def llm_config(args: argparse.Namespace):
    """LLMConfig from an optional YAML file (its `llm:` section or the whole file), then flags."""
    from genrecsys.config import LLMConfig, from_dict, load_yaml

    raw = llm_settings(args)
    if args.max_reasks is not None:
        raw["max_reasks"] = args.max_reasks
    # getattr: commands that share this builder but not the Ray flags keep the YAML's choice
    if getattr(args, "ray", False):
        raw["executor"] = "ray"
    ray_flags = {k: getattr(args, k) for k in ("ray_workers", "ray_address", "ray_batch_size", "ray_cpus_per_worker")
                 if getattr(args, k, None) is not None}
    if ray_flags and raw.get("executor") != "ray":
        raise GenrecsysError(f"{', '.join('--' + k.replace('_', '-') for k in ray_flags)} need(s) --ray")
    raw.update(ray_flags)
    if args.prices:
        raw["prices"] = load_yaml(args.prices)
    return from_dict(LLMConfig, raw, str(args.config or "llm"))


def _cli_contract(args: argparse.Namespace):
    """The contract of --schema/--choices/--regex/--grammar, checked before anything runs."""
    from genrecsys.llm.contracts import contract_from_files

    return contract_from_files(schema=args.schema, choices=args.choices, regex=args.regex, grammar=args.grammar)


def _compile_first(llm, contract, args: argparse.Namespace) -> None:
    """A contract the backend's grammar engine cannot compile stops here, before any request."""
    engine = getattr(llm.backend, "engine", None) if llm.contracts_on else None
    if contract is None or engine is None:
        return
    given = next(f"--{k} {getattr(args, k)}" for k in ("schema", "choices", "regex", "grammar") if getattr(args, k))
    try:
        engine.compile(contract)
    except GenrecsysError as exc:
        raise GenrecsysError(f"{given}: {exc}") from None


def cmd_llm_generate(args: argparse.Namespace, cache_dir: Path) -> int:
    from genrecsys.llm.client import LLM
    from genrecsys.llm.types import SamplingParams

    contract = _cli_contract(args)
    rows = _read_rows(Path(args.input), args.limit)
    cfg = llm_config(args)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                            seed=args.seed, stop=tuple(args.stop or ()))
    parser = _parser(args)
    if parser is None and contract is not None and contract.kind == "json":
        from genrecsys.llm.parse import parse_json

        parser = parse_json  # a schema's answers come back parsed
    llm = LLM(cfg, cache_dir, progress=not args.no_progress)
    try:
        _compile_first(llm, contract, args)
        comps = _run(args, llm, rows, params, parser, contract if llm.contracts_on else None)
    except KeyboardInterrupt:
        exit_interrupted(llm)
    finally:
        llm.close()
    out_rows = [{"id": row["id"], **_row(c)} for row, c in zip(rows, comps)]
    if contract is not None:  # judged against the contract whatever decoded it (a fallback may not hold)
        for r, c in zip(out_rows, comps):
            r["valid"] = bool(c.ok and contract.check(c.text) is None)
    _write_jsonl(Path(args.output), out_rows)
    summary = {"rows": len(rows), **llm.stats.to_dict(), "output": str(args.output)}
    summary.pop("tasks", None)
    if args.json:
        print(json.dumps(summary))
    else:
        s = summary
        print(f"rows {s['rows']}: ok {s['ok']}, failed {s['failed']} | cache hits {s['cache_hits']}, backend calls "
              f"{s['backend_calls']}, re-asks {s['reasks']}, truncated {s['truncated']} | tokens {s['prompt_tokens']} in / "
              f"{s['completion_tokens']} out | cost ${s['cost']:.4f} (all answers ${s['cost_total']:.4f}) | "
              f"{s['wall_s']:.1f} s, {s['tokens_per_s']:.1f} tok/s"
              + (f" | contract: {s['constrained_answers']} constrained, {s['contract_violations']} invalid, "
                 f"{s['fallbacks']} fallbacks" if contract is not None else ""), file=sys.stderr)
        print(args.output)
    return 0 if summary["failed"] == 0 else 1


def _run(args: argparse.Namespace, llm, rows: list[dict[str, Any]], params, parser, contract=None) -> list:
    from genrecsys.llm.job import keep_recent
    from genrecsys.llm.types import Request

    if args.template:
        template = llm.template(args.template)
        variables = [{k: v for k, v in row.items() if k != "id"} for row in rows]
        truncate = keep_recent(args.truncate, recent_first=not args.oldest_first) if args.truncate else None
        return llm.run_template(template, variables, params=params, parser=parser, truncate=truncate,
                                task=args.task or template.name, contract=contract)
    reqs: list = []
    for n, row in enumerate(rows, 1):
        try:
            reqs.append(Request(messages=tuple(row["messages"]), params=params, task=args.task or "default",
                                contract=contract))
        except (KeyError, TypeError, ValueError) as exc:
            raise GenrecsysError(f"{args.input}: row {n} (id {row['id']!r}): without --template each row needs "
                                 f"\"messages\": [{{role, content}}, ...] ({exc})") from None
    return llm.generate(reqs, parser=parser, desc=args.task or "llm")


def _row(c) -> dict[str, Any]:
    return {"text": c.text, "parsed": _jsonable(c.parsed), "finish_reason": c.finish_reason, "error": c.error,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "cached": c.cached,
            "latency_s": round(c.latency_s, 4), "backend": c.backend, "model": c.model}


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)  # pydantic models
    return dump() if callable(dump) else value


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomic: the output is either the old file or the complete new one."""
    with building_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _cache_path(args: argparse.Namespace, cache_dir: Path) -> Path:
    from genrecsys.llm.job import default_cache_path

    return Path(args.cache) if args.cache else default_cache_path(cache_dir)


@contextlib.contextmanager
def _open_text(path: Path, mode: str, gz: bool) -> Iterator[TextIO]:
    """A UTF-8 text file, read or written through gzip when `gz`."""
    if not gz:
        with open(path, mode, encoding="utf-8") as f:
            yield f
        return
    import gzip

    # no file name and mtime 0 in the gzip header: the same answers export to the same bytes
    with open(path, mode + "b") as raw, gzip.GzipFile(filename="", mode=mode + "b", fileobj=raw, mtime=0) as z, \
            io.TextIOWrapper(z, encoding="utf-8") as f:
        yield f


def _import_cache(args: argparse.Namespace, path: Path) -> int:
    """`llm cache import FILE...`: answers exported elsewhere (JSONL, or .gz of it) into this
    cache. Each file is read and checked whole before its one transaction."""
    from genrecsys.llm.cache import LLMCache

    if not args.files:
        raise GenrecsysError("`llm cache import` needs the exported JSONL file(s) to read")
    cache = LLMCache(path)
    total = new = 0
    for name in args.files:
        f = Path(name)
        if not f.is_file():
            raise GenrecsysError(f"{f}: no such file")
        with open(f, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        rows = []
        try:
            with _open_text(f, "r", gz) as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise GenrecsysError(f"{f}:{lineno}: not a JSON object ({exc.msg})") from None
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise GenrecsysError(f"{f}: unreadable ({exc})") from None
        try:
            added = cache.import_rows(rows)
        except GenrecsysError as exc:
            raise GenrecsysError(f"{f}: {exc}; nothing imported from it") from None
        total, new = total + len(rows), new + added
    summary = {"cache": str(path), "rows": total, "new": new, "already_cached": total - new}
    if args.json:
        print(json.dumps(summary))
    print(f"imported {new} new answers into {path} ({total - new} of {total} were already cached)", file=sys.stderr)
    return 0


def cmd_llm_cache(args: argparse.Namespace, cache_dir: Path) -> int:
    from genrecsys.llm.cache import LLMCache

    path = _cache_path(args, cache_dir)
    if args.action == "import":
        return _import_cache(args, path)
    if args.files:
        raise GenrecsysError(f"`llm cache {args.action}` takes no FILE arguments (only import does)")
    if not path.exists():
        raise GenrecsysError(f"no LLM cache at {path}")
    cache = LLMCache(path)
    if args.action == "stats":
        st = cache.stats()
        if args.json:
            print(json.dumps(st.__dict__))
        else:
            print(f"{st.path}: {st.rows} answers, {st.bytes / 1e6:.1f} MB, tokens {st.prompt_tokens} in / {st.completion_tokens} out")
            for name, n in sorted(st.by_model.items()):
                print(f"  model     {name}: {n}")
            for name, n in sorted(st.by_template.items()):
                print(f"  template  {name}: {n}")
    elif args.action == "export":
        n = 0
        with contextlib.ExitStack() as stack:
            out: TextIO = sys.stdout
            if args.output:  # all or nothing; gzip-compressed when the name ends in .gz
                tmp = stack.enter_context(building_file(Path(args.output)))
                out = stack.enter_context(_open_text(tmp, "w", gz=args.output.endswith(".gz")))
            for row in cache.export(template=args.template):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        print(f"exported {n} answers", file=sys.stderr)
    else:
        if not (args.template or args.model or args.yes):
            raise GenrecsysError("`llm cache clear` deletes every cached answer (money already spent); "
                                 "add --yes, or narrow it with --template/--model")
        n = cache.clear(template=args.template, model=args.model)
        print(f"deleted {n} answers from {path}", file=sys.stderr)
    return 0


def cmd_llm_templates(args: argparse.Namespace, cache_dir: Path) -> int:
    from genrecsys.llm.templates import list_templates

    for t in list_templates(args.templates_dir):
        print(f"{t.name:<18} v{t.version:<4} vars: {', '.join(t.variables) or '-':<36} {t.description.strip()[:70]}")
    return 0


def add_ray_flags(g) -> None:
    """`--ray [--ray-workers N] [--ray-address A] [--ray-batch-size B] [--ray-cpus-per-worker C]`."""
    g.add_argument("--ray", action="store_true",
                   help="answer on a pool of Ray actors (Ray Data; pip install \"genrecsys[ray]\") sharing the same "
                        "cache; same results, same order as without it")
    g.add_argument("--ray-workers", type=at_least(1), help="--ray: actors, each holding one backend (default 2)")
    g.add_argument("--ray-address", help="--ray: cluster to join (\"auto\", \"ray://host:10001\"); default: start a local Ray")
    g.add_argument("--ray-batch-size", type=at_least(1), help="--ray: prompts per actor call (default 64)")
    g.add_argument("--ray-cpus-per-worker", type=POSITIVE,
                   help="--ray: CPUs each actor reserves (default 1; an HTTP backend needs far less, e.g. 0.25)")


def add_llm_parser(sub, cache_dir: Callable[[argparse.Namespace], Path]) -> None:
    """Attach `llm generate|cache|templates` to the top-level subparsers."""
    llm = sub.add_parser("llm", help="run prompts through an LLM backend; manage the answer cache",
                         description="Bulk LLM generation with an exactly-once cache.")
    lsub = llm.add_subparsers(dest="llm_command", required=True, metavar="COMMAND")

    def add(name: str, fn, help: str) -> argparse.ArgumentParser:
        sp = lsub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=lambda a: fn(a, cache_dir(a)))
        return sp

    sp = add("generate", cmd_llm_generate,
             "answer every row of a JSONL file (rows: {id, <template variables>} or {id, messages}); "
             "rerunning sends only rows without a cached answer; exit 1 if any row failed")
    sp.add_argument("--input", required=True, help="JSONL input, one object with an \"id\" per line")
    sp.add_argument("--output", required=True, help="JSONL output in input order (written atomically at the end)")
    sp.add_argument("--template", help="template name or .yaml file (see `genrecsys llm templates`)")
    sp.add_argument("--task", help="task name for accounting (default: the template name)")
    add_llm_flags(sp)
    sp.add_argument("--max-tokens", type=at_least(1), default=128, help="tokens to generate per answer (default 128)")
    sp.add_argument("--temperature", type=NON_NEGATIVE, default=0.0, help="0 = greedy (default)")
    sp.add_argument("--top-p", type=between(0, 1, low_open=True), default=1.0)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--stop", action="append", help="stop string (repeatable)")
    sp.add_argument("--parse", choices=["none", "json", "bracketed", "value", "title", "numbered"], default="none",
                    help="parse and validate answers; a bad answer is re-asked up to --max-reasks times")
    sp.add_argument("--fields", nargs="+", help="--parse bracketed: the [field] names to extract")
    sp.add_argument("--schema", metavar="FILE.json",
                    help="output contract: every answer is JSON valid against this JSON Schema (parsed as JSON)")
    sp.add_argument("--choices", metavar="FILE", help="output contract: every answer is one line of FILE")
    sp.add_argument("--regex", metavar="PATTERN", help="output contract: every answer matches PATTERN")
    sp.add_argument("--grammar", metavar="FILE.gbnf", help="output contract: a GBNF grammar (root rule)")
    sp.add_argument("--max-reasks", type=at_least(0), help="re-asks of an answer that does not parse (default 1)")
    sp.add_argument("--truncate", metavar="VARIABLE",
                    help="list variable to shorten (oldest items first) when a prompt is too long; else such rows fail")
    sp.add_argument("--oldest-first", action="store_true", help="the --truncate list is oldest-first (default: most recent first)")
    sp.add_argument("--prices", help="YAML price table: model: {prompt: USD/1M, completion: USD/1M}")
    sp.add_argument("--limit", type=at_least(1), help="only the first N rows")
    add_ray_flags(sp)
    sp.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    sp.add_argument("--no-progress", action="store_true")

    sp = add("cache", cmd_llm_cache, "inspect, export, import or clear the answer cache")
    sp.add_argument("action", choices=["stats", "export", "import", "clear"])
    sp.add_argument("files", nargs="*", metavar="FILE",
                    help="import: files written by `export` (JSONL or JSONL.gz); keys already cached keep their answer")
    sp.add_argument("--cache", help="SQLite cache file (default <cache dir>/llm/cache.sqlite)")
    sp.add_argument("--template", help="export/clear only this template's answers")
    sp.add_argument("--model", help="clear only this model's answers")
    sp.add_argument("--output", help="export: JSONL file, gzip-compressed if it ends in .gz (default stdout)")
    sp.add_argument("--yes", action="store_true", help="clear: really delete everything")
    sp.add_argument("--json", action="store_true")

    sp = add("templates", cmd_llm_templates, "list prompt templates (name, version, variables)")
    sp.add_argument("--templates-dir", help="directory of user templates overriding built-ins by name")


def exit_interrupted(llm, note: str = "") -> None:
    """Ctrl-C during an LLM job: every answer that arrived is already committed to the cache.
    Exit at once (130) rather than wait for requests still in flight, which may hang until
    their timeout."""
    print(f"\ngenrecsys: interrupted; {len(llm.cache)} answers are in {llm.cache.path}{note}. "
          "Rerun the same command to resume: answered prompts are not sent again.", file=sys.stderr)
    sys.stderr.flush()
    llm.cache.close()
    os._exit(130)
