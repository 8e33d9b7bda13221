"""Data-parallel training (PyTorch DDP, gloo, 2 local processes) through the one loop:
close to one process at the same global batch, exactly resumable, refused when it cannot work."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from genrecsys.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from genrecsys.errors import GenrecsysError
from genrecsys.experiment import build_model, load_split
from genrecsys.train.distributed import rank_batches
from genrecsys.train.loop import fit

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_rank_batches_deal_full_rounds_only():
    batches = list(range(7))
    assert list(rank_batches(iter(batches), 0, 3)) == [0, 3]
    assert list(rank_batches(iter(batches), 2, 3)) == [2, 5]  # batch 6 has no round: dropped on every rank


def _fit(split, name, params, cfg, run_dir=None, resume=False, model=None):
    torch.manual_seed(0)
    model = model or build_model(name, params, split)
    result = fit(model, split, cfg, EvalConfig(ks=(10,)), run_dir=run_dir, resume=resume)
    return model, result


@pytest.mark.parametrize("name,params,lr,batch", [("bpr", {}, 0.05, 256), ("sasrec", {"max_len": 20}, 5e-3, 32)])
def test_two_processes_reach_one_process_accuracy_at_the_same_global_batch(block_dataset_dir, name, params, lr, batch):
    split = load_split(ExperimentConfig(data=DataConfig(dataset=str(block_dataset_dir))))
    cfg = TrainConfig(epochs=6, lr=lr, batch_size=batch, progress=False, threads=1, patience=100)
    _, one = _fit(split, name, params, cfg)
    _, two = _fit(split, name, params, replace(cfg, nproc=2))
    assert two.epochs_run == one.epochs_run == 6
    assert [r["epoch"] for r in two.history] == list(range(6)) and all("valid" in r for r in two.history)
    # Same global batch, different samples per step and dropout draws: close, not equal (stated tolerance 0.05).
    assert abs(two.best_valid["ndcg@10"] - one.best_valid["ndcg@10"]) <= 0.05, (one.best_valid, two.best_valid)
    assert two.best_valid["ndcg@10"] > 0.2  # block-cycles is learnable: both actually trained


def test_a_two_process_epoch_is_the_mean_gradient_step_applied_once(block_dataset_dir):
    """The DDP semantics written out in one process: each round, every rank's half-batch
    gradient, their mean, one Adam step. Ranks sharing the weights' memory (what handing the
    module itself to spawn does) apply each step twice and race: far off this."""
    import copy

    split = load_split(ExperimentConfig(data=DataConfig(dataset=str(block_dataset_dir))))
    params = {"max_len": 20, "dropout": 0.0}  # no random draws: the epoch is a pure function
    cfg = TrainConfig(epochs=1, lr=5e-3, batch_size=8, progress=False, threads=1, patience=100, nproc=2)
    torch.manual_seed(0)
    expected = build_model("sasrec", params, split)
    ranks = [copy.deepcopy(expected) for _ in range(2)]
    optim = torch.optim.Adam(expected.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    batches = list(expected.batches(split, cfg.batch_size // 2, rng))
    rounds = 0
    for i in range(0, len(batches) - 1, 2):
        grads = []
        for model, batch in zip(ranks, batches[i:i + 2]):
            model.load_state_dict(expected.state_dict())
            model.zero_grad(set_to_none=True)
            model.loss(batch).backward()
            grads.append([p.grad for p in model.parameters()])
        for p, g0, g1 in zip(expected.parameters(), *grads):
            p.grad = (g0 + g1) / 2
        optim.step()
        rounds += 1
    assert rounds >= 3  # several steps: a doubled or racing update has room to show

    trained, result = _fit(split, "sasrec", params, cfg)
    assert result.epochs_run == 1
    for (k, v), w in zip(expected.state_dict().items(), trained.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-6, rtol=0), (k, (v - w).abs().max())


def test_a_resumed_two_process_run_matches_an_uninterrupted_one(block_dataset_dir, tmp_path):
    split = load_split(ExperimentConfig(data=DataConfig(dataset=str(block_dataset_dir))))
    cfg = TrainConfig(epochs=4, lr=5e-3, batch_size=32, progress=False, threads=1, patience=100, nproc=2)
    params = {"max_len": 20, "dropout": 0.3}
    straight, r_straight = _fit(split, "sasrec", params, cfg, run_dir=tmp_path / "a")
    _fit(split, "sasrec", params, replace(cfg, epochs=2), run_dir=tmp_path / "b")  # "interrupted" after 2 epochs
    resumed, r_resumed = _fit(split, "sasrec", params, cfg, run_dir=tmp_path / "b", resume=True)
    assert r_resumed.epochs_run == 4
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert r_resumed.best_valid == r_straight.best_valid
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4  # rank 0 alone writes the log: no line twice


def test_the_cli_trains_data_parallel_and_refuses_what_cannot_work(block_dataset_dir, tmp_path):
    from genrecsys.cli.main import main

    out = tmp_path / "run"
    assert main(["train", "--model", "bpr", "--dataset", str(block_dataset_dir), "--epochs", "2", "--lr", "0.05",
                 "--nproc", "2", "--threads", "1", "--no-progress", "--output-dir", str(out)]) == 0
    assert (out / "metrics.json").is_file()
    split = load_split(ExperimentConfig(data=DataConfig(dataset=str(block_dataset_dir))))
    with pytest.raises(Exception, match="smaller than train.nproc"):  # raised in the ranks, reported by spawn
        _fit(split, "bpr", {}, TrainConfig(epochs=1, batch_size=1, nproc=2, progress=False))
    with pytest.raises(GenrecsysError, match="nproc"):
        TrainConfig(nproc=0)
    # A one-process checkpoint does not resume under two processes (it holds one rank's random state).
    _fit(split, "bpr", {}, TrainConfig(epochs=1, progress=False), run_dir=tmp_path / "one")
    with pytest.raises(Exception, match="resume with the same train.nproc"):
        _fit(split, "bpr", {}, TrainConfig(epochs=2, progress=False, nproc=2), run_dir=tmp_path / "one", resume=True)


@pytest.mark.parametrize("name", ["lightgcn", "gru4rec", "multvae", "hstu", "tiger", "nrms"])
def test_other_families_train_data_parallel(block_dataset_dir, name):
    """Graph, sequence, VAE, generative (HSTU, TIGER) and news (NRMS, on impressions) models."""
    from newsfixtures import news_params

    split = load_split(ExperimentConfig(data=DataConfig(dataset=str(block_dataset_dir))))
    params = {"codes": "digits"} if name == "tiger" else news_params(name, None)
    _, result = _fit(split, name, params, TrainConfig(epochs=2, batch_size=32, progress=False, threads=1, nproc=2))
    assert result.epochs_run == 2 and all(np.isfinite(r["loss"]) for r in result.history)
    metric = "auc" if name == "nrms" else "ndcg@10"
    assert 0.0 <= result.best_valid[metric] <= 1.0


def test_torchrun_over_two_nodes_trains_what_nproc_2_trains(block_dataset_dir, tmp_path):
    """Two torchrun launches on loopback, one rank each (as on two machines), give the run
    `--nproc 2` gives: the same weights and test metrics; rank 0 alone writes the run."""
    import json
    import os
    import subprocess
    import sys

    from genrecsys.cli.main import main
    from genrecsys.train.distributed import _free_port

    common = ["--model", "sasrec", "--dataset", str(block_dataset_dir), "--epochs", "3", "--lr", "0.01",
              "--batch-size", "32", "--threads", "1", "--no-progress", "--seed", "0"]
    assert main(["train", *common, "--nproc", "2", "--output-dir", str(tmp_path / "spawned")]) == 0
    port = str(_free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(i), "--master-addr", "127.0.0.1", "--master-port", port,
                               "-m", "genrecsys", "train", *common, "--output-dir", str(tmp_path / "torchrun")],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (0, 1)]
    for node in nodes:
        out, err = node.communicate(timeout=240)
        assert node.returncode == 0, err[-1500:]
    a = torch.load(tmp_path / "spawned" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "torchrun" / "model.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    ma, mb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("spawned", "torchrun"))
    assert ma["test"] == pytest.approx(mb["test"], abs=1e-6) and ma["epochs"] == mb["epochs"] == 3
    assert not (tmp_path / ".torchrun.partial").exists()  # published by rank 0, nothing left behind
