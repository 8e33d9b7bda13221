"""`genrecsys tune` on Ray Tune: trials are normal run directories, the selection is the
best validation score, test figures are read for the selected run only, a rerun trains
nothing again, and bad spaces are one-line errors."""
import json
import os
from pathlib import Path

import pytest
import yaml

from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig, load_experiment
from genrecsys.errors import GenrecsysError
from genrecsys.stages.tune import load_space, run_tune, trial_id, tune_report

ray = pytest.importorskip("ray", reason='Ray is optional: pip install "genrecsys[ray]" (it is in the test extra)')
pytest.importorskip("ray.tune", reason='Ray Tune is missing: pip install "ray[tune]"')


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _base(block_dataset_dir):
    return ExperimentConfig(model="bpr", data=DataConfig(dataset=str(block_dataset_dir)),
                            train=TrainConfig(epochs=3, threads=1, progress=False, patience=100))


def test_tune_selects_on_validation_and_reads_test_once(block_dataset_dir, tmp_path):
    base = _base(block_dataset_dir)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"train.lr": {"loguniform": [1e-3, 0.3]},
                                                         "model_params.embedding_size": {"choice": [8, 32]}}))
    space = load_space(tmp_path / "space.yaml", base)
    summary = run_tune(base, space, tmp_path / "tune", trials=3, concurrent=2, seed=1)
    assert summary["trials"] == summary["finished"] == 3
    runs = sorted((tmp_path / "tune" / "runs").iterdir())
    assert len(runs) == 3 and all((r / "metrics.json").is_file() for r in runs)  # normal run directories
    valid = {r.name: json.loads((r / "metrics.json").read_text())["valid"]["ndcg@10"] for r in runs}
    best = Path(summary["best"]["run_dir"]).name
    assert valid[best] == max(valid.values()) == summary["best"]["valid"]  # chosen on validation
    assert summary["best_test"] == json.loads((tmp_path / "tune" / "runs" / best / "metrics.json").read_text())["test"]
    assert best == trial_id(summary["best"]["values"])
    chosen = load_experiment(tmp_path / "tune" / "best.yaml")
    assert chosen.train.lr == summary["best"]["values"]["train.lr"] and chosen.model_params["embedding_size"] in (8, 32)
    report = tune_report(summary)
    assert report.count("test figures") == 1 and "valid ndcg@10" in report

    # Run again: Ray Tune restores its finished record and no run is trained again.
    stamps = {r.name: os.stat(r / "metrics.json").st_mtime_ns for r in runs}
    again = run_tune(base, space, tmp_path / "tune", trials=3, concurrent=2, seed=1)
    assert again["best"] == summary["best"]
    assert {r.name: os.stat(r / "metrics.json").st_mtime_ns for r in runs} == stamps


def test_concurrent_one_runs_one_trial_at_a_time_though_two_cpus_are_free(block_dataset_dir, tmp_path):
    """Ray Tune ignores TuneConfig's max_concurrent_trials for a search generator passed in;
    the generator's own cap holds. A trial's span: its metrics.json time minus its training."""
    from dataclasses import replace

    base = _base(block_dataset_dir)
    base = replace(base, train=replace(base.train, epochs=40))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"train.lr": {"loguniform": [1e-3, 0.1]}}))
    run_tune(base, load_space(tmp_path / "space.yaml", base), tmp_path / "tune", trials=3, concurrent=1, seed=2)
    spans = []
    for r in (tmp_path / "tune" / "runs").iterdir():
        end = os.stat(r / "metrics.json").st_mtime
        spans.append((end - json.loads((r / "metrics.json").read_text())["train_seconds"], end))
    spans.sort()
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end - 0.05, spans  # the next trial trained after the previous one finished


def test_a_bad_space_is_a_one_line_error(block_dataset_dir, tmp_path):
    base = _base(block_dataset_dir)
    for bad, message in (({"train.lr": {"gaussian": [0, 1]}}, "expected one of"),
                         ({"train.lr": {"uniform": [0.1]}}, r"\[low, high\]"),
                         ({"train.lr": {"loguniform": [0, 1]}}, "low > 0"),
                         ({"train.nonsense": {"choice": [1]}}, "nonsense"),
                         ({"model_params.dim": {"choice": [8]}}, "unknown key.*dim"),
                         ({}, "empty")):
        (tmp_path / "s.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(GenrecsysError, match=message):
            load_space(tmp_path / "s.yaml", base)


def test_a_killed_tune_resumes_without_training_a_finished_trial_again(block_dataset_dir, tmp_path):
    """`genrecsys tune` SIGKILLed (with its Ray processes) after two of four trials finished:
    the same command finishes the other two and leaves the first two's runs untouched."""
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"train.lr": {"loguniform": [1e-3, 0.1]}}))
    out = tmp_path / "tune"
    cmd = [sys.executable, "-m", "genrecsys", "--cache-dir", str(tmp_path / "cache"), "tune", "--model", "bpr",
           "--dataset", str(block_dataset_dir), "--space", str(tmp_path / "space.yaml"), "--trials", "4",
           "--concurrent", "1", "--threads", "1", "--epochs", "30", "--patience", "1000", "--output-dir", str(out)]
    env = {**os.environ, "RAY_ADDRESS": ""}  # its own local Ray, not this module's

    def finished():
        return sorted(p.parent for p in (out / "runs").glob("trial-*/metrics.json")) if (out / "runs").is_dir() else []

    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(finished()) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    done = finished()
    assert 2 <= len(done) < 4, f"the tune was not killed mid-search ({len(done)} trials done): {proc.stderr.read()[-500:]}"
    stamps = {r.name: os.stat(r / "metrics.json").st_mtime_ns for r in done}

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-800:]
    summary = json.loads((out / "tune.json").read_text())
    assert summary["finished"] == 4 and len(finished()) == 4
    assert {r.name: os.stat(r / "metrics.json").st_mtime_ns for r in done} == stamps  # not trained again
