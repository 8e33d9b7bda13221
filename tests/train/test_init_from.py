"""Warm start (train.init_from): a run's weights start another; a model with extra layers
(RELAND's gated fusion) starts as exactly that run, and selection keeps the start unless
an epoch beats it on validation, so the warm-started run is never below it on validation."""
import json

import numpy as np
import pytest
import torch

from genrecsys.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from genrecsys.errors import GenrecsysError
from genrecsys.experiment import build_model, init_weights, load_run, load_split, run_experiment, run_seeds


def _cfg(block_dataset_dir, **train):
    return ExperimentConfig(model="sasrec", model_params={"max_len": 20}, data=DataConfig(dataset=str(block_dataset_dir)),
                            train=TrainConfig(progress=False, threads=1, **train), eval=EvalConfig(ks=(10,)))


def test_a_gated_reland_model_starts_as_the_id_only_run_and_never_ends_below_it_on_validation(block_dataset_dir, tmp_path):
    base = run_experiment(_cfg(block_dataset_dir, epochs=4, lr=5e-3), tmp_path / "id")
    split = load_split(_cfg(block_dataset_dir))
    text = np.random.default_rng(0).normal(size=(split.n_users + 1, 6)).astype(np.float32)
    np.save(tmp_path / "user_text.npy", text)
    fused = build_model("sasrec", {"max_len": 20, "user_text": str(tmp_path / "user_text.npy"), "user_fusion": "gated"},
                        split)
    missing = init_weights(fused, "sasrec", tmp_path / "id", 2020)
    assert missing and all(k.startswith("user_fusion") for k in missing)  # only the new layer starts fresh
    _, _, id_model = load_run(tmp_path / "id")
    users, seqs = torch.arange(4), torch.randint(1, split.n_items + 1, (4, 20))
    id_model.eval(), fused.eval()
    assert torch.allclose(fused.score(users, seqs), id_model.score(users, seqs))  # gate 0: exactly the ID run

    # a learning rate that can only hurt: the start stays selected, and the run says so
    warm = run_experiment(_cfg(block_dataset_dir, epochs=2, lr=5.0, init_from=str(tmp_path / "id")), tmp_path / "warm")
    assert warm["best_epoch"] == -1 and warm["valid"]["ndcg@10"] == pytest.approx(base["valid"]["ndcg@10"])


def test_init_from_picks_the_same_seed_of_a_multi_seed_run_and_refuses_a_mismatch(block_dataset_dir, tmp_path):
    run_seeds(_cfg(block_dataset_dir, epochs=1), tmp_path / "multi", 2)
    split = load_split(_cfg(block_dataset_dir))
    model = build_model("sasrec", {"max_len": 20}, split)
    init_weights(model, "sasrec", tmp_path / "multi", 2021)
    saved = torch.load(tmp_path / "multi" / "seed-2021" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    with pytest.raises(GenrecsysError, match="is a sasrec run, this is bpr"):
        init_weights(build_model("bpr", {}, split), "bpr", tmp_path / "multi", 2021)
    with pytest.raises(GenrecsysError, match="cannot take"):
        init_weights(build_model("sasrec", {"max_len": 20, "embedding_size": 16}, split), "sasrec", tmp_path / "multi", 2021)
    with pytest.raises(GenrecsysError, match="not a finished run"):
        init_weights(model, "sasrec", tmp_path / "nowhere", 2020)
    assert json.loads((tmp_path / "multi" / "metrics.json").read_text())["model"] == "sasrec"
