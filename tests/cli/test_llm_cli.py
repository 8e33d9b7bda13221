"""`genrecsys llm ...` end to end against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrecsys.cli.main import main
from openai_server import OpenAITestServer, answer_for


def _write_rows(path: Path, prompts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "messages": [{"role": "user", "content": p}]}) + "\n"
                            for i, p in enumerate(prompts)))
    return path


def _args(server_url: str, inp: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["llm", "generate", "--backend", "openai", "--base-url", server_url, "--input", str(inp),
            "--output", str(out), "--cache", str(cache), "--no-progress", "--json", *extra]


def _stable(path: Path) -> list[dict]:
    """Output rows without the fields that legitimately differ between runs."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("cached", "latency_s")}
            for line in path.read_text().splitlines()]


def _committed(cache: Path) -> int:
    try:
        return sqlite3.connect(cache).execute("SELECT COUNT(*) FROM completions").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_generate_writes_rows_in_input_order_and_a_json_summary(server, tmp_path, capsys):
    prompts = ["a MODE=slow0.2", "b", "c MODE=429x1", "d"]
    inp = _write_rows(tmp_path / "in.jsonl", prompts)
    code = main(_args(server.url, inp, tmp_path / "out.jsonl", tmp_path / "c.sqlite"))
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2, 3]
    assert [r["text"] for r in rows] == [answer_for(p) for p in prompts]
    assert summary["rows"] == 4 and summary["ok"] == 4 and summary["backend_calls"] == 4 and summary["cache_hits"] == 0
    assert {"prompt_tokens", "completion_tokens", "cost", "tokens_per_s", "wall_s"} <= set(summary)


def test_unchanged_rerun_makes_zero_backend_calls(server, tmp_path, capsys):
    inp = _write_rows(tmp_path / "in.jsonl", ["a", "b", "c"])
    args = _args(server.url, inp, tmp_path / "out.jsonl", tmp_path / "c.sqlite")
    main(args)
    capsys.readouterr()
    n = len(server.bodies)
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(server.bodies) == n and summary["backend_calls"] == 0 and summary["cache_hits"] == 3


def test_failed_rows_are_in_the_output_and_make_the_exit_code_1(server, tmp_path, capsys):
    inp = _write_rows(tmp_path / "in.jsonl", ["ok", "MODE=400"])
    assert main(_args(server.url, inp, tmp_path / "out.jsonl", tmp_path / "c.sqlite")) == 1
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[0]["error"] is None and "HTTP 400" in rows[1]["error"]
    assert json.loads(capsys.readouterr().out)["failed"] == 1


@pytest.mark.parametrize("content,message", [("{not json}\n", "in.jsonl:1: not a JSON object"),
                                             ('{"messages": []}\n', 'in.jsonl:1: row has no "id"'),
                                             ('{"id": 1, "messages": []}\n{"id": 1, "messages": []}\n', "duplicate id")])
def test_malformed_input_is_a_one_line_error_before_any_request(server, tmp_path, capsys, content, message):
    inp = tmp_path / "in.jsonl"
    inp.write_text(content)
    assert main(_args(server.url, inp, tmp_path / "out.jsonl", tmp_path / "c.sqlite")) == 2
    assert message in capsys.readouterr().err
    assert server.bodies == [] and not (tmp_path / "out.jsonl").exists()


def test_template_rows_are_rendered_and_parsed(server, tmp_path, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "u1", "prompt": "MODE=prose give me an item"}) + "\n")
    code = main(_args(server.url, inp, tmp_path / "out.jsonl", tmp_path / "c.sqlite",
                      "--template", "chat", "--parse", "json"))
    assert code == 0
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row["id"] == "u1" and row["parsed"]["category"] == "news"
    assert server.bodies[0]["messages"][-1]["content"] == "MODE=prose give me an item"


def test_cache_stats_export_and_clear(server, tmp_path, capsys):
    inp = _write_rows(tmp_path / "in.jsonl", ["a", "b"])
    cache = tmp_path / "c.sqlite"
    main(_args(server.url, inp, tmp_path / "out.jsonl", cache))
    capsys.readouterr()
    assert main(["llm", "cache", "stats", "--cache", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 2
    assert main(["llm", "cache", "export", "--cache", str(cache), "--output", str(tmp_path / "x.jsonl")]) == 0
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 2
    assert main(["llm", "cache", "clear", "--cache", str(cache)]) == 2  # refuses without --yes
    assert main(["llm", "cache", "clear", "--cache", str(cache), "--yes"]) == 0
    assert _committed(cache) == 0


def test_cache_exported_to_gz_and_imported_elsewhere_answers_a_rerun_with_no_backend_call(server, tmp_path, capsys):
    inp = _write_rows(tmp_path / "in.jsonl", ["a", "b", "c"])
    main(_args(server.url, inp, tmp_path / "out.jsonl", tmp_path / "c.sqlite"))
    export = ["llm", "cache", "export", "--cache", str(tmp_path / "c.sqlite"), "--output"]
    assert main([*export, str(tmp_path / "x.jsonl.gz")]) == 0
    assert main([*export, str(tmp_path / "y.jsonl.gz")]) == 0
    gz = (tmp_path / "x.jsonl.gz").read_bytes()
    assert gz[:2] == b"\x1f\x8b" and gz == (tmp_path / "y.jsonl.gz").read_bytes()  # same answers, same bytes
    capsys.readouterr()
    fresh = tmp_path / "fresh.sqlite"
    for expected_new in (3, 0):  # importing twice adds nothing the second time
        assert main(["llm", "cache", "import", str(tmp_path / "x.jsonl.gz"), "--cache", str(fresh), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"cache": str(fresh), "rows": 3, "new": expected_new,
                                                       "already_cached": 3 - expected_new}
    n = len(server.bodies)
    main(_args(server.url, inp, tmp_path / "again.jsonl", fresh))
    assert json.loads(capsys.readouterr().out)["backend_calls"] == 0 and len(server.bodies) == n
    assert _stable(tmp_path / "again.jsonl") == _stable(tmp_path / "out.jsonl")


def test_importing_a_malformed_file_names_its_line_and_imports_nothing(tmp_path, capsys):
    good = json.dumps({"key": "k", "backend": "b", "model": "m", "completion": {"text": "x"}})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n{oops\n")
    cache = tmp_path / "c.sqlite"
    assert main(["llm", "cache", "import", str(bad), "--cache", str(cache)]) == 2
    assert "bad.jsonl:2: not a JSON object" in capsys.readouterr().err
    assert _committed(cache) == 0
    assert main(["llm", "cache", "import", "--cache", str(cache)]) == 2
    assert "needs the exported JSONL" in capsys.readouterr().err


def _kill_midway(tmp_path: Path, prompts: list[str], sig: int) -> tuple[OpenAITestServer, Path, Path, subprocess.Popen]:
    held = OpenAITestServer(hold_after=5)
    inp = _write_rows(tmp_path / "in.jsonl", prompts)
    cache, out = tmp_path / "c.sqlite", tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A shell's background jobs start with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "genrecsys", *_args(held.url, inp, out, cache, "--concurrency", "2")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    # wait until the 5 answers are committed and the next requests are being held
    while (_committed(cache) < 5 or sum(held.attempts.values()) < 6) and time.time() < deadline:
        time.sleep(0.05)
    assert _committed(cache) == 5, proc.stderr.read() if proc.poll() is not None else "timeout"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    held.release()
    return held, inp, out, proc


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_job_killed_midway_resumes_answering_each_prompt_exactly_once(tmp_path, sig, capsys):
    prompts = [f"prompt number {i}" for i in range(12)]
    held, inp, out, proc = _kill_midway(tmp_path, prompts, sig)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Rerun the same command" in proc.stderr.read()
    assert not out.exists()  # no half-written output
    held.close()

    server = OpenAITestServer()
    try:
        assert main(_args(server.url, inp, out, tmp_path / "c.sqlite")) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["cache_hits"] == 5 and summary["backend_calls"] == 7
        answered = held.answered + server.answered
        assert all(answered[p] == 1 for p in prompts), answered  # exactly once across both runs

        fresh = tmp_path / "fresh"
        fresh.mkdir()
        assert main(_args(server.url, inp, fresh / "out.jsonl", fresh / "c.sqlite")) == 0
        assert _stable(out) == _stable(fresh / "out.jsonl")  # same as an uninterrupted run
    finally:
        server.close()


def test_every_llm_using_command_reads_the_backend_flags_into_the_same_config(tmp_path):
    from genrecsys.cli.llm import llm_config
    from genrecsys.cli.main import _llm_settings, build_parser
    from genrecsys.config import LLMConfig, from_dict

    yaml = tmp_path / "llm.yaml"
    yaml.write_text("llm:\n  max_reasks: 3\n  concurrency: 2\n")
    values = ["--config", str(yaml), "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
              "--api-key-env", "K", "--concurrency", "5", "--batch-size", "3", "--threads", "1", "--device", "cpu",
              "--timeout", "7.5", "--max-context", "512", "--cache", str(tmp_path / "c.sqlite"),
              "--templates-dir", str(tmp_path), "--allow-remote"]
    prefixed = [v if not v.startswith("--") or v == "--allow-remote" else "--llm-" + v[2:] for v in values]
    p = build_parser()
    generate = llm_config(p.parse_args(["llm", "generate", "--input", "x", "--output", "y", *values]))
    augment = llm_config(p.parse_args(["augment", "summarize", "--dataset", "d", "--output", "o", *values]))
    train = from_dict(LLMConfig, _llm_settings(p.parse_args(["train", "--model", "pop", "--reland", *prefixed]), {}),
                      "llm")
    main_job = from_dict(LLMConfig, _llm_settings(p.parse_args(["main", *prefixed]), {}), "llm")
    assert generate == augment == train == main_job
    assert (generate.backend, generate.timeout_s, generate.max_reasks, generate.concurrency) == ("openai", 7.5, 3, 5)
    assert generate.allow_remote and generate.templates_dir == str(tmp_path)
