from __future__ import annotations

import json
import subprocess
import sys

import pytest

from genrecsys.cli.main import main


def _run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_metrics_and_prints_the_run_directory_last(block_dataset_dir, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, _ = _run(["train", "--model", "bpr", "--dataset", str(block_dataset_dir), "--epochs", "2",
                         "--no-progress", "--output-dir", str(out_dir)], capsys)
    assert code == 0
    assert out.strip().splitlines()[-1] == str(out_dir)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    for stage in ("test", "valid"):
        assert {"ndcg@10", "hit@10", "mrr@10"} <= set(metrics[stage])
    assert metrics["train_seconds"] > 0
    for name in ("per_user.parquet", "model.pt", "config.yaml", "report.md", "curve.png", "log.jsonl"):
        assert (out_dir / name).is_file(), name
    assert not list(tmp_path.glob(".*partial"))  # the work directory was renamed into place


def test_eval_every_validates_every_n_epochs_and_after_the_last(block_dataset_dir, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, _, _ = _run(["train", "--model", "bpr", "--dataset", str(block_dataset_dir), "--epochs", "3",
                       "--eval-every", "2", "--no-progress", "--output-dir", str(out_dir)], capsys)
    assert code == 0
    history = json.loads((out_dir / "history.json").read_text())
    assert [r["epoch"] for r in history if "valid" in r] == [1, 2]  # 0-based: the 2nd and the 3rd (last)


def test_train_into_a_directory_another_process_trains_stops_with_one_line(block_dataset_dir, tmp_path, capsys,
                                                                          other_process):
    out_dir = tmp_path / "run"
    work = tmp_path / ".run.partial"
    work.mkdir()
    (work / "checkpoint.pt").write_bytes(b"theirs")
    pid = other_process.hold(out_dir)
    code, _, err = _run(["train", "--model", "pop", "--dataset", str(block_dataset_dir), "--output-dir",
                         str(out_dir)], capsys)
    assert code == 2 and f"pid {pid}" in err and len(err.strip().splitlines()) == 1
    assert (work / "checkpoint.pt").read_bytes() == b"theirs" and not out_dir.exists()


def test_seeds_write_mean_and_std(block_dataset_dir, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, _ = _run(["train", "--model", "pop", "--dataset", str(block_dataset_dir), "--seeds", "2",
                         "--output-dir", str(out_dir)], capsys)
    assert code == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["seeds"] == [2020, 2021] and "ndcg@10" in metrics["test_std"]
    assert (out_dir / "seed-2021" / "metrics.json").is_file()


def test_recommend_and_evaluate_and_compare_use_a_finished_run(block_dataset_dir, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for model, d in (("bpr", a), ("pop", b)):
        assert _run(["train", "--model", model, "--dataset", str(block_dataset_dir), "--epochs", "2",
                     "--no-progress", "--output-dir", str(d)], capsys)[0] == 0
    code, out, _ = _run(["recommend", str(a), "--user", "u1", "-k", "3"], capsys)
    assert code == 0 and "user u1: top-3" in out and "Item" in out  # titles are shown
    code, out, _ = _run(["evaluate", str(a), "--stage", "valid", "test"], capsys)
    assert code == 0 and set(json.loads(out)) == {"valid", "test"}
    code, out, _ = _run(["compare", str(a), str(b)], capsys)
    assert code == 0 and "ndcg@10" in out


def test_compare_pairs_on_the_seeds_asked_for(tmp_path, capsys):
    import pandas as pd

    for run, values in (("a", {2020: 0.1, 2021: 0.9}), ("b", {2020: 0.3, 2021: 0.0})):
        for seed, v in values.items():
            (tmp_path / run / f"seed-{seed}").mkdir(parents=True)
            pd.DataFrame({"stage": "test", "user": ["u1", "u2"], "ndcg@10": [v, v + 0.1]}).to_parquet(
                tmp_path / run / f"seed-{seed}" / "per_user.parquet", index=False)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    code, out, _ = _run(["compare", a, b, "--metric", "ndcg@10", "--seeds", "2020"], capsys)
    assert code == 0 and "left out: seed-2021" in out and "| +0.2000 |" in out
    code, out, _ = _run(["compare", a, b, "--metric", "ndcg@10"], capsys)
    assert code == 0 and "| -0.3500 |" in out  # both seeds
    code, _, err = _run(["compare", a, b, "--seeds", "2030"], capsys)
    assert code == 2 and "no seed of 2030 has" in err and len(err.strip().splitlines()) == 1


def test_recommend_for_an_unknown_user_is_a_one_line_error(block_dataset_dir, tmp_path, capsys):
    d = tmp_path / "a"
    _run(["train", "--model", "pop", "--dataset", str(block_dataset_dir), "--output-dir", str(d)], capsys)
    code, out, err = _run(["recommend", str(d), "--user", "nobody"], capsys)
    assert code == 2 and "unknown user 'nobody'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "sasrek"], "choose one of"),
    (["train", "--model", "pop", "--dataset", "/no/such/dir"], "unknown dataset"),
    (["train", "--model", "pop", "--param", "oops"], "key=value"),
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "genrecsys", *args, "--output-dir", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_unknown_model_param_is_an_error(block_dataset_dir, tmp_path, capsys):
    code, _, err = _run(["train", "--model", "bpr", "--dataset", str(block_dataset_dir), "--param", "embeding_size=8",
                         "--output-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and "embeding_size" in err and "embedding_size" in err


def test_every_command_has_help():
    for cmd in (["train"], ["evaluate"], ["compare"], ["recommend"], ["data", "prepare"], ["main"], ["models"]):
        proc = subprocess.run([sys.executable, "-m", "genrecsys", *cmd, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage:" in proc.stdout


@pytest.mark.parametrize("fmt, fixture", [("movielens", "ml-1m"), ("yelp", "yelp"), ("amazon", "amazon-2018")])
def test_data_prepare_reads_official_formats_by_name(fmt, fixture, capsys):
    from pathlib import Path

    path = Path(__file__).parents[1] / "data" / "fixtures" / fixture
    code, out, err = _run(["data", "prepare", fmt, "--path", str(path)], capsys)
    assert code == 0, err
    assert "#Users" in out


def test_format_without_path_is_a_clear_error(capsys):
    code, _, err = _run(["data", "prepare", "yelp"], capsys)
    assert code == 2 and "--data-path" in err
