"""`genrecsys augment ...` end to end against the real test HTTP server on 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from genrecsys.cli.main import main
from genrecsys.data.schema import Dataset
from openai_server import OpenAITestServer, answer_for


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    items = pd.DataFrame({"item": [f"N{i}" for i in range(1, 9)], "category": ["sports", "finance"] * 4,
                          "title": [f"Story number {i}" for i in range(1, 9)], "abstract": ["An abstract."] * 8})
    inter = pd.DataFrame({"user": ["U1"] * 4 + ["U2"] * 6, "item": ["N1", "N2", "N7", "N8", "N3", "N4", "N5", "N6", "N7", "N8"],
                          "timestamp": [1, 2, 3, 4, 1, 2, 3, 4, 5, 6]})
    return Dataset("cli-news", inter, items, pd.DataFrame({"user": ["U1", "U2"]})).save(tmp_path / "cli-news")


def _args(task: str, url: str, dataset: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["augment", task, "--dataset", str(dataset), "--output", str(out), "--backend", "openai", "--base-url", url,
            "--model", "gpt-4o-mini", "--cache", str(cache), "--no-progress", "--json", *extra]


def test_summarize_writes_a_variant_and_a_json_summary(server, dataset_dir, tmp_path, capsys):
    out = tmp_path / "ns"
    assert main(_args("summarize", server.url, dataset_dir, out, tmp_path / "c.sqlite")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == str(out.resolve()) and summary["rows"] == 8 and summary["backend_calls"] == 8
    assert summary["cost_total"] > 0 and summary["quality"]["summarize"]["enhanced"] == 8
    items = pd.read_parquet(out / "items.parquet").set_index("item")
    assert items.loc["N1", "title_original"] == "Story number 1" and items.loc["N1", "title"].startswith("answer-")


def test_rerun_resumes_through_the_cache_with_zero_backend_calls(server, dataset_dir, tmp_path, capsys):
    args = _args("profile", server.url, dataset_dir, tmp_path / "up", tmp_path / "c.sqlite")
    main(args)
    capsys.readouterr()
    sent = len(server.bodies)
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(server.bodies) == sent and summary["backend_calls"] == 0 and summary["cost"] == 0
    # the test server's answers hold no topic list: every profile is a counted parse failure
    assert summary["parse_failures"] == 2 and summary["quality"]["profile"]["parse_failure_rate"] == 1.0


def test_limit_and_new_user_flags_reach_the_tasks(server, dataset_dir, tmp_path, capsys):
    assert main(_args("summarize", server.url, dataset_dir, tmp_path / "a", tmp_path / "c.sqlite", "--limit", "3")) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 3
    # U1 sees 2 items (its last 2 are held out), U2 sees 4: with --new-user-max 2 only U1 is new
    assert main(_args("generate", server.url, dataset_dir, tmp_path / "b", tmp_path / "c.sqlite",
                      "--new-user-max", "2", "--n-items", "3")) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 3


def test_show_prints_an_items_titles_and_the_llm_answer(server, dataset_dir, tmp_path, capsys):
    out = tmp_path / "ns"
    main(_args("summarize", server.url, dataset_dir, out, tmp_path / "c.sqlite"))
    capsys.readouterr()
    assert main(["augment", "show", str(out), "--item", "N1", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["row"]["title_original"] == "Story number 1"
    (answer,) = info["llm_answers"]
    assert answer["task"] == "summarize" and answer["text"] == info["row"]["title"]
    assert main(["augment", "show", str(out), "--item", "N1"]) == 0
    text = capsys.readouterr().out
    assert "title_original" in text and "Story number 1" in text and "LLM [summarize] ok" in text


def test_show_prints_a_users_profile_history_and_synthetic_items(server, dataset_dir, tmp_path, capsys):
    out = tmp_path / "ng"
    main(_args("generate", server.url, dataset_dir, out, tmp_path / "c.sqlite", "--users", "U2"))
    capsys.readouterr()
    assert main(["augment", "show", str(out), "--user", "U2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [h["item"] for h in info["history"]] == ["N6", "N5", "N4", "N3"]  # most recent first, N7/N8 held out
    assert len(info["llm_answers"]) == 2 and all(a["error"].startswith("parse:") for a in info["llm_answers"])
    assert info["synthetic_items"] == []
    assert main(["augment", "show", str(out), "--user", "nobody"]) == 2
    assert "no user 'nobody'" in capsys.readouterr().err


def test_help_documents_every_task():
    proc = subprocess.run([sys.executable, "-m", "genrecsys", "augment", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for task in ("summarize", "profile", "generate", "chain", "all", "show"):
        assert task in proc.stdout


def test_ctrl_c_leaves_no_variant_and_the_rerun_pays_only_for_the_rest(dataset_dir, tmp_path, capsys):
    held = OpenAITestServer(hold_after=3)
    cache, out = tmp_path / "c.sqlite", tmp_path / "ns"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A shell's background jobs start with SIGINT ignored: restore the default, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "genrecsys",
                             *_args("summarize", held.url, dataset_dir, out, cache, "--concurrency", "1")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 60
        while sum(held.attempts.values()) < 4 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the third answer is committed before the fourth request goes out
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode == 130 and "Rerun the same command" in proc.stderr.read()
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".ns.")]
    finally:
        held.release()
        held.close()
    server = OpenAITestServer()
    try:
        assert main(_args("summarize", server.url, dataset_dir, out, cache)) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["cache_hits"] == 3 and summary["backend_calls"] == 5
        answered = held.answered + server.answered
        assert len(answered) == 8 and all(n == 1 for n in answered.values())  # each item paid exactly once
        titles = set(pd.read_parquet(out / "items.parquet")["title"])
        assert titles == {answer_for(p) for p in answered}
    finally:
        server.close()
