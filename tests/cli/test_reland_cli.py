"""`genrecsys train --reland` / `--item-features` and `recommend` on a RELAND run, end to end
against the real OpenAI-compatible test server on 127.0.0.1 and tiny taste-group data."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from genrecsys.cli.main import main
from reasoning.reasoningdata import group_dataset


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "groups"
    group_dataset().save(path)
    return path


def train_args(tmp_path, data_dir, minilm, out, *extra: str) -> list[str]:
    return ["--cache-dir", str(tmp_path / "cache"), "train", "--model", "sasrec", "--dataset", str(data_dir),
            "--epochs", "1", "--no-progress", "--encoder-epochs", "2", "--text-encoder", minilm,
            "--output-dir", str(out), *extra]


def reland_args(server, tmp_path) -> list[str]:
    return ["--reland", "--llm-backend", "openai", "--llm-base-url", server.url,
            "--llm-cache", str(tmp_path / "llm.sqlite")]


def test_train_reland_writes_the_llm_block_with_at_most_ten_percent_seed_users(server, tmp_path, data_dir, minilm,
                                                                             capsys):
    out = tmp_path / "run"
    code = main(train_args(tmp_path, data_dir, minilm, out, *reland_args(server, tmp_path), "--item-features"))
    assert code == 0 and capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    llm = json.loads((out / "metrics.json").read_text())["llm"]
    assert {"calls", "users", "seed_users", "prompt_tokens", "completion_tokens"} <= set(llm)
    assert llm["users"] == 24 and 1 <= llm["seed_users"] <= 0.1 * 24
    assert llm["calls"] == llm["backend_calls"] == server.total_answered == llm["seed_users"]
    assert llm["prompt_tokens"] > 0 and llm["completion_tokens"] > 0
    for f in ("reland/pool/pool.parquet", "reland/assignment.parquet", "reland/user_text.npy", "reland/item_text.npy"):
        assert (out / f).is_file(), f
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model_params"] == {"user_text": "reland/user_text.npy", "item_text": "reland/item_text.npy",
                                     "user_fusion": "gated"}  # the default form, recorded so the run reloads as trained
    assert saved["reland"]["seed_fraction"] == 0.1 and saved["reland"]["llm"]["backend"] == "openai"


def test_rerunning_train_reland_makes_zero_backend_calls(server, tmp_path, data_dir, minilm, capsys):
    args = train_args(tmp_path, data_dir, minilm, tmp_path / "run", *reland_args(server, tmp_path))
    assert main(args) == 0
    answered = server.total_answered
    assert main(args) == 0
    llm = json.loads((tmp_path / "run" / "metrics.json").read_text())["llm"]
    assert server.total_answered == answered and llm["backend_calls"] == 0
    assert llm["cache_hits"] == llm["calls"] == llm["seed_users"]  # the cost of the pool is still reported


def test_recommend_shows_the_rationale_and_its_seed_user_even_after_the_run_moves(server, tmp_path, data_dir, minilm,
                                                                                capsys):
    run = tmp_path / "run"
    main(train_args(tmp_path, data_dir, minilm, run, *reland_args(server, tmp_path)))
    moved = tmp_path / "moved"
    shutil.move(run, moved)  # the saved config points into the run directory relatively
    capsys.readouterr()
    assert main(["--cache-dir", str(tmp_path / "cache"), "recommend", str(moved), "--user", "u1", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    pool = pd.read_parquet(moved / "reland/assignment.parquet").set_index("user").loc["u1"]
    assert lines[0] == "user u1: top-3"
    assert lines[1].startswith(f"  why (LLM rationale of seed user {pool['seed_user']}, similarity ")
    assert lines[1].endswith(pool["step1"]) and pool["step1"].startswith("answer-")  # the server's answer
    assert len(lines) == 5
    assert main(["--cache-dir", str(tmp_path / "cache"), "recommend", str(moved), "--user", "u1", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["explanation"]["seed_user"] == pool["seed_user"] and row["explanation"]["rationale"] == pool["step1"]


def test_item_features_alone_train_without_an_llm_and_recommend_as_a_plain_run(server, tmp_path, data_dir, minilm,
                                                                               capsys):
    out = tmp_path / "run"
    assert main(train_args(tmp_path, data_dir, minilm, out, "--item-features")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "llm" not in metrics and server.total_answered == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["model_params"] == {"item_text": "reland/item_text.npy"}
    assert np.load(out / "reland/item_text.npy").shape == (24 + 1, 384)
    assert not (out / "reland/assignment.parquet").exists()
    capsys.readouterr()
    assert main(["--cache-dir", str(tmp_path / "cache"), "recommend", str(out), "--user", "u1", "-k", "2"]) == 0
    assert "why" not in capsys.readouterr().out
    assert main(["--cache-dir", str(tmp_path / "cache"), "recommend", str(out), "--user", "u1", "--json"]) == 0
    assert "explanation" not in json.loads(capsys.readouterr().out)[0]


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genrecsys", *args], capture_output=True, text=True, timeout=300)


def test_an_empty_seed_budget_exits_2_with_one_line_and_no_traceback(tmp_path, data_dir, minilm):
    proc = _cli(train_args(tmp_path, data_dir, minilm, tmp_path / "run", "--reland", "--seed-fraction", "0"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "seed_fraction" in proc.stderr and "empty reasoning pool" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_pool_from_another_encoder_exits_2_with_a_dimension_message(tmp_path, data_dir, minilm):
    from genrecsys.config import LLMConfig
    from genrecsys.data.splits import leave_one_out
    from genrecsys.llm.client import LLM, EchoBackend
    from genrecsys.reasoning.pool import build_pool
    from reasoning.reasoningdata import group_matrix

    split = leave_one_out(group_dataset())
    llm = LLM(LLMConfig(), backend=EchoBackend(), cache_path=tmp_path / "echo.sqlite")
    build_pool(llm, split, group_matrix(split), [0, 1], out_dir=tmp_path / "pool4")  # d = 4, LightGCN gives 64
    llm.close()
    proc = _cli(train_args(tmp_path, data_dir, minilm, tmp_path / "run", "--reland", "--reland-pool",
                           str(tmp_path / "pool4")))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "dimension mismatch" in proc.stderr and "d=64" in proc.stderr and "d=4" in proc.stderr


def test_reland_flags_without_reland_are_an_error(tmp_path, data_dir, minilm, capsys):
    code = main(train_args(tmp_path, data_dir, minilm, tmp_path / "run", "--seed-fraction", "0.2"))
    assert code == 2 and "need(s) --reland or --item-features" in capsys.readouterr().err


def test_a_yaml_reland_section_is_checked_for_unknown_keys(tmp_path, data_dir, minilm, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("reland:\n  seed_fraction: 0.1\n  seed_fractoin: 0.2\n")
    code = main(train_args(tmp_path, data_dir, minilm, tmp_path / "run", "--config", str(cfg)))
    err = capsys.readouterr().err
    assert code == 2 and "reland: unknown key(s) seed_fractoin" in err and "Traceback" not in err


def test_two_seeds_keep_one_llm_block_and_each_seed_reuses_the_pool(server, tmp_path, data_dir, minilm, capsys):
    out = tmp_path / "run"
    assert main(train_args(tmp_path, data_dir, minilm, out, *reland_args(server, tmp_path), "--seeds", "2")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    first, second = (r["llm"] for r in metrics["runs"])
    assert metrics["llm"] == first and first["backend_calls"] == first["seed_users"] == server.total_answered
    assert second["backend_calls"] == 0 and second["cache_hits"] == first["seed_users"]
    capsys.readouterr()
    assert main(["--cache-dir", str(tmp_path / "cache"), "recommend", str(out), "--user", "u2", "-k", "2"]) == 0
    assert "why (LLM rationale of seed user" in capsys.readouterr().out


@pytest.mark.parametrize("flag", [["--llm-config", "llm.yaml"], ["--llm-timeout", "5"], ["--llm-backend", "openai"]])
def test_llm_flags_without_reland_are_an_error(tmp_path, data_dir, minilm, capsys, flag):
    code = main(train_args(tmp_path, data_dir, minilm, tmp_path / "run", *flag))
    assert code == 2 and f"{flag[0]} need(s) --reland" in capsys.readouterr().err
