from __future__ import annotations

import json
from dataclasses import replace

import pytest

from genrecsys.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from genrecsys.experiment import load_run, run_experiment, run_seeds


def _cfg(dataset_dir, **train):
    return ExperimentConfig(model="bpr", data=DataConfig(dataset=str(dataset_dir)),
                            train=TrainConfig(progress=False, lr=0.05, **{"epochs": 4, **train}))


def test_a_crash_leaves_no_output_directory_and_resume_finishes_it(block_dataset_dir, tmp_path, monkeypatch):
    import genrecsys.eval.report as report

    out = tmp_path / "run"

    def boom(*a, **k):
        raise RuntimeError("crash while writing the report")

    monkeypatch.setattr(report, "write_run_report", boom)
    with pytest.raises(RuntimeError):
        run_experiment(_cfg(block_dataset_dir), out)
    assert not out.exists()
    partial = tmp_path / ".run.partial"
    assert (partial / "checkpoint.pt").is_file()
    monkeypatch.undo()
    metrics = run_experiment(_cfg(block_dataset_dir), out, resume=True)
    assert metrics["epochs"] == 4 and out.is_dir() and not partial.exists()
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2, 3]  # no epoch trained twice


def test_a_finished_run_reloads_with_identical_test_metrics(block_dataset_dir, tmp_path):
    from genrecsys.train.loop import evaluate

    out = tmp_path / "run"
    metrics = run_experiment(_cfg(block_dataset_dir), out)
    cfg, split, model = load_run(out)
    again = evaluate(model, split, "test", cfg.eval, cfg.data.max_seq_len).metrics
    assert again == pytest.approx(metrics["test"])


def test_a_moved_runs_directory_finds_its_semantic_ids_beside_the_rows_and_says_when_they_are_gone(block_dataset_dir,
                                                                                                   tmp_path):
    """A runs directory copied elsewhere (evidence, another machine): a TIGER run's
    config names its codes by the path they had; loading finds them by name beside it."""
    import shutil

    from genrecsys.errors import GenrecsysError
    from genrecsys.experiment import load_split
    from genrecsys.train.loop import evaluate
    from newsfixtures import make_toy_semantic_ids

    split = load_split(_cfg(block_dataset_dir))
    trained = tmp_path / "there" / "runs"
    make_toy_semantic_ids(split, trained / "codes-rkmeans")
    cfg = ExperimentConfig(model="tiger", model_params={"codes": str(trained / "codes-rkmeans"), "d_model": 16,
                                                        "ffn_dim": 32, "layers": 1, "heads": 2, "max_len": 8},
                           data=DataConfig(dataset=str(block_dataset_dir)),
                           train=TrainConfig(progress=False, epochs=1, batch_size=64), eval=EvalConfig(ks=(10,)))
    run_seeds(cfg, trained / "tiger", 1)
    metrics = json.loads((trained / "tiger" / "seed-2020" / "metrics.json").read_text())
    moved = tmp_path / "here" / "runs"
    shutil.move(str(trained), str(moved))
    cfg2, split2, model = load_run(moved / "tiger")
    assert cfg2.model_params["codes"] == str((moved / "codes-rkmeans").resolve())
    assert evaluate(model, split2, "test", cfg2.eval, cfg2.data.max_seq_len).metrics == pytest.approx(metrics["test"])
    shutil.rmtree(moved / "codes-rkmeans")
    with pytest.raises(GenrecsysError, match=r"semantic IDs .*codes-rkmeans are gone and no codes-rkmeans/ is beside"):
        load_run(moved / "tiger", weights=False)


def test_run_seeds_resumed_after_every_seed_finished_reads_no_data(block_dataset_dir, tmp_path, monkeypatch):
    import genrecsys.experiment as experiment

    first = run_seeds(_cfg(block_dataset_dir, epochs=1), tmp_path / "runs", seeds=2)

    def no_data(*a, **k):
        raise AssertionError("finished seeds must be reused without loading the dataset")

    monkeypatch.setattr(experiment, "load_split", no_data)
    again = run_seeds(_cfg(block_dataset_dir, epochs=1), tmp_path / "runs", seeds=2, resume=True)
    assert again == first


def test_a_run_another_process_is_training_is_refused_and_its_work_kept(block_dataset_dir, tmp_path, other_process):
    from genrecsys.files import Busy

    out = tmp_path / "run"
    work = tmp_path / ".run.partial"
    work.mkdir()
    (work / "checkpoint.pt").write_bytes(b"the other process's epoch 7")
    other_process.hold(out)
    with pytest.raises(Busy, match="training into"):
        run_experiment(_cfg(block_dataset_dir), out)  # without the lock this wiped `work`
    assert (work / "checkpoint.pt").read_bytes() == b"the other process's epoch 7"
    other_process.kill()
    run_experiment(_cfg(block_dataset_dir, epochs=1), out)
    assert not work.exists() and (out / "metrics.json").is_file()


def test_run_seeds_leaves_a_seed_another_process_trains_to_it_and_awaits_its_result(block_dataset_dir, tmp_path,
                                                                                     other_process, monkeypatch,
                                                                                     capsys):
    import genrecsys.experiment as experiment
    from genrecsys.files import Busy

    cfg = _cfg(block_dataset_dir, epochs=1)
    first, second = (tmp_path / "runs" / f"seed-{cfg.train.seed + i}" for i in range(2))
    other_process.hold(first)
    with pytest.raises(Busy):  # without resume the caller asked to train it, not to wait
        run_seeds(cfg, tmp_path / "runs", seeds=2)
    waits = []

    def the_other_process_finishes(s):
        waits.append(s)
        assert (second / "metrics.json").is_file()  # the free seed was trained meanwhile
        other_process.kill()
        run_experiment(cfg, first)  # its seed is cfg's own

    monkeypatch.setattr(experiment.time, "sleep", the_other_process_finishes)
    agg = run_seeds(cfg, tmp_path / "runs", seeds=2, resume=True, wait_s=7)
    assert waits == [7]
    theirs = json.loads((first / "metrics.json").read_text())
    assert agg["runs"][0]["test"] == theirs["test"]  # read, in seed order, not trained again
    assert "left to the process training it" in capsys.readouterr().err


def test_reuse_returns_a_finished_run_without_training_it_again(block_dataset_dir, tmp_path, monkeypatch):
    import genrecsys.experiment as experiment

    out = tmp_path / "run"
    first = run_experiment(_cfg(block_dataset_dir, epochs=1), out)
    before = (out / "model.pt").stat().st_mtime_ns

    def no_data(*a, **k):
        raise AssertionError("a finished run must not be trained again")

    monkeypatch.setattr(experiment, "load_split", no_data)
    assert run_experiment(_cfg(block_dataset_dir, epochs=1), out, reuse=True) == json.loads(
        json.dumps(first))
    assert (out / "model.pt").stat().st_mtime_ns == before


def test_reuse_refuses_a_finished_run_trained_with_other_settings_in_one_line_and_keeps_it(block_dataset_dir, tmp_path,
                                                                                          monkeypatch):
    """A benchmark reuses a finished row by its directory: asked with another setting that
    changes what is learned (a LoRA rank, a learning rate, the number of blocks), it must
    say so instead of returning the other run's figures as the asked one's."""
    import shutil

    import genrecsys.experiment as experiment
    from genrecsys.errors import GenrecsysError

    out = tmp_path / "run"
    first = run_experiment(_cfg(block_dataset_dir, epochs=1), out)
    monkeypatch.setattr(experiment, "load_split", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    asked = {"lr": replace(_cfg(block_dataset_dir, epochs=1), train=TrainConfig(progress=False, lr=0.01, epochs=1)),
             "n_negatives": replace(_cfg(block_dataset_dir, epochs=1), model_params={"n_negatives": 1}),
             "split": replace(_cfg(block_dataset_dir, epochs=1), data=DataConfig(str(block_dataset_dir), split="ratio")),
             "epochs": _cfg(block_dataset_dir, epochs=2)}
    for key, cfg in asked.items():
        with pytest.raises(GenrecsysError, match=rf"^{out}: a finished run trained with other settings \(\S*{key} ") as e:
            run_experiment(cfg, out, reuse=True)
        assert "\n" not in str(e.value)
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(first))  # kept
    # what does not change the weights is not compared: threads, device, progress, a
    # model default written out, the evaluation, and where the dataset directory now is
    moved = tmp_path / "elsewhere" / block_dataset_dir.name
    shutil.copytree(block_dataset_dir, moved)
    same = replace(_cfg(moved, epochs=1, threads=1), model_params={"n_negatives": 4}, eval=EvalConfig(ks=(5,)))
    same = replace(same, train=replace(same.train, progress=True))
    assert run_experiment(same, out, reuse=True) == json.loads(json.dumps(first))


def test_per_user_parquet_carries_longtail_membership_and_metrics_json_its_means(block_dataset_dir, tmp_path):
    import math

    import pandas as pd

    from genrecsys.eval.compare import compare_runs

    # Block-cycle items have 10-17 training interactions: a threshold of 12 splits them.
    cfg = ExperimentConfig(model="pop", data=DataConfig(dataset=str(block_dataset_dir)),
                           train=TrainConfig(progress=False, epochs=1), eval=EvalConfig(longtail_max_train=12))
    out = tmp_path / "run"
    metrics = run_experiment(cfg, out)
    df = pd.read_parquet(out / "per_user.parquet")
    test = df[df["stage"] == "test"]
    assert df["longtail"].dtype == bool
    assert 0 < test["longtail"].sum() < len(test)
    assert test["longtail_ndcg@10"].isna().tolist() == (~test["longtail"]).tolist()
    assert metrics["test"]["longtail_users"] == test["longtail"].sum()
    assert metrics["test"]["longtail_ndcg@10"] == pytest.approx(test["longtail_ndcg@10"].mean())
    assert metrics["protocol"]["longtail_max_train"] == 12
    assert "Long tail: users whose target item has at most 12" in (out / "report.md").read_text()
    row = compare_runs(out, out, metrics=("longtail_ndcg@10",))["longtail_ndcg@10"]
    assert row.n_users == test["longtail"].sum() and row.diff == 0.0
    assert not math.isnan(row.mean_a)


@pytest.mark.parametrize("train", [{"eval_every": 1}, {"eval_every": 2, "patience": 1}, {"epochs": 5, "eval_every": 2}])
def test_the_valid_figures_are_the_best_epochs_validation_not_a_second_pass(block_dataset_dir, tmp_path, monkeypatch,
                                                                            train):
    """An LLM model's validation pass costs minutes: the run's valid metrics and per-user
    rows are those of the validation that selected the restored weights, which is what a
    fresh evaluation of the saved run gives."""
    import pandas as pd

    import genrecsys.train.loop as loop

    calls = []
    real = loop.evaluate
    monkeypatch.setattr(loop, "evaluate", lambda model, split, stage, *a, **k: calls.append(stage) or
                        real(model, split, stage, *a, **k))
    out = tmp_path / "run"
    metrics = run_experiment(_cfg(block_dataset_dir, **train), out)
    validated = sum("valid" in r for r in json.loads((out / "history.json").read_text()))
    assert calls == ["valid"] * validated + ["test"]  # no valid pass after training
    monkeypatch.undo()
    cfg, split, model = load_run(out)
    again = loop.evaluate(model, split, "valid", cfg.eval, cfg.data.max_seq_len)
    assert again.metrics == pytest.approx(metrics["valid"])
    rows = pd.read_parquet(out / "per_user.parquet").query("stage == 'valid'")
    assert rows["ndcg@10"].to_numpy() == pytest.approx(again.per_user["ndcg@10"])


def test_a_run_resumed_from_an_older_checkpoint_without_the_kept_validation_evaluates_again(block_dataset_dir,
                                                                                           tmp_path, monkeypatch):
    import torch

    import genrecsys.eval.report as report
    import genrecsys.train.loop as loop

    out = tmp_path / "run"
    monkeypatch.setattr(report, "write_run_report", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        run_experiment(_cfg(block_dataset_dir), out)
    monkeypatch.undo()
    ckpt = tmp_path / ".run.partial" / "checkpoint.pt"
    saved = torch.load(ckpt, weights_only=False)
    saved["state"].pop("best_result")  # as a checkpoint of an earlier genrecsys has it
    torch.save(saved, ckpt)
    calls = []
    real = loop.evaluate
    monkeypatch.setattr(loop, "evaluate", lambda model, split, stage, *a, **k: calls.append(stage) or
                        real(model, split, stage, *a, **k))
    metrics = run_experiment(_cfg(block_dataset_dir), out, resume=True)
    assert calls == ["valid", "test"]  # every epoch was done: only the run's own valid and test passes
    monkeypatch.undo()
    cfg, split, model = load_run(out)
    assert loop.evaluate(model, split, "valid", cfg.eval, cfg.data.max_seq_len).metrics == pytest.approx(metrics["valid"])


def test_beyond_accuracy_reads_the_lists_the_test_evaluation_ranked_instead_of_scoring_again(block_dataset_dir,
                                                                                            tmp_path, monkeypatch):
    import numpy as np

    import genrecsys.eval.ranking as ranking
    from genrecsys.eval.ranking import top_k_lists
    from genrecsys.train.loop import score_fn

    def no_second_pass(*a, **k):
        raise AssertionError("the test lists were ranked once already")

    monkeypatch.setattr(ranking, "top_k_lists", no_second_pass)
    out = tmp_path / "run"
    run_experiment(_cfg(block_dataset_dir), out)
    assert (out / "beyond.json").is_file()
    monkeypatch.undo()
    cfg, split, model = load_run(out)
    model.on_eval_start()
    res = ranking.evaluate_ranking(score_fn(model), split, "test", (10,), max_len=cfg.data.max_seq_len)
    users, lists = top_k_lists(score_fn(model), split, "test", 10, max_len=cfg.data.max_seq_len)
    np.testing.assert_array_equal(res.users, users)
    np.testing.assert_array_equal(res.lists, lists)


def test_a_run_writes_its_beyond_accuracy_metrics_and_report_section(block_dataset_dir, tmp_path):
    """beyond.json equals a recomputation from the reloaded model; its NDCG@10 is the run's own;
    the report gains the section and groups.png; eval.beyond=False writes neither."""
    import numpy as np

    from genrecsys.eval.holistic import holistic
    from genrecsys.train.loop import score_fn

    out = tmp_path / "run"
    metrics = run_experiment(_cfg(block_dataset_dir), out)
    beyond = json.loads((out / "beyond.json").read_text())
    assert beyond["summary"]["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"])
    cfg, split, model = load_run(out)
    model.on_eval_start()
    again = holistic(score_fn(model), split, k=10)["summary"]
    assert {m: again[m] for m in ("coverage", "gini", "novelty")} == pytest.approx(
        {m: beyond["summary"][m] for m in ("coverage", "gini", "novelty")})
    assert 0 < beyond["summary"]["coverage"] <= 1 and np.isfinite(beyond["summary"]["gini"])
    text = (out / "report.md").read_text()
    assert "## Beyond accuracy (test top-10 lists)" in text and "| activity |" in text
    assert (out / "groups.png").stat().st_size > 1000
    off = ExperimentConfig(model="bpr", data=DataConfig(dataset=str(block_dataset_dir)),
                           train=TrainConfig(progress=False, epochs=1), eval=EvalConfig(beyond=False))
    run_experiment(off, tmp_path / "off")
    assert not (tmp_path / "off" / "beyond.json").exists()
    assert "Beyond accuracy" not in (tmp_path / "off" / "report.md").read_text()
