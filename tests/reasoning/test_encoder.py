"""The behaviour encoder: M's layout, where its vectors come from, and a light import."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
from genrecsys.errors import GenrecsysError
from genrecsys.experiment import run_experiment, train_behaviour_encoder, user_matrix_from_run
from genrecsys.models.bpr import BPR
from genrecsys.models.lightgcn import LightGCN, LightGCNConfig
from genrecsys.models.pop import Pop
from genrecsys.reasoning.encoder import EncoderConfig, pad_user_vectors, user_matrix
from reasoningdata import split  # noqa: F401  (fixtures)


def test_lightgcn_user_matrix_is_the_final_propagated_embeddings_under_a_padding_row(split):
    model = LightGCN(split, LightGCNConfig(embedding_size=8, n_layers=2))
    m = user_matrix(model)
    with torch.no_grad():
        users, _ = model.propagated()
    assert m.shape == (split.n_users + 1, 8) and m.dtype == np.float32
    assert not m[0].any() and np.allclose(m[1:], users.numpy())


def test_a_model_with_a_user_table_gives_that_table_and_one_without_is_an_error(split):
    bpr = BPR(split)
    assert np.allclose(user_matrix(bpr)[1:], bpr.user_emb.weight.detach().numpy())
    with pytest.raises(GenrecsysError, match="Pop has no user vectors"):
        user_matrix(Pop(split))


def test_training_the_encoder_returns_m_and_leaves_torch_threads_alone(split):
    before = torch.get_num_threads()
    m, result = train_behaviour_encoder(split, EncoderConfig(embedding_size=8, epochs=2, threads=2))
    assert m.shape == (split.n_users + 1, 8) and not m[0].any() and np.isfinite(m).all()
    assert result.epochs_run == 2 and torch.get_num_threads() == before


def test_user_matrix_from_a_finished_run_directory(block_dataset_dir, tmp_path):
    cfg = ExperimentConfig(model="lightgcn", model_params={"embedding_size": 8, "n_layers": 1},
                           data=DataConfig(dataset=str(block_dataset_dir)), train=TrainConfig(epochs=1, progress=False))
    run_experiment(cfg, tmp_path / "run")
    m, split = user_matrix_from_run(tmp_path / "run")
    assert m.shape == (split.n_users + 1, 8) and not m[0].any()
    with pytest.raises(GenrecsysError, match="not a run directory"):
        user_matrix_from_run(tmp_path)
    from genrecsys.config import RelandConfig
    from genrecsys.reasoning.run import behaviour_matrix

    run_cfg = RelandConfig(encoder=str(tmp_path / "run"))
    assert behaviour_matrix(split, run_cfg, encoder_run=(m, split))[1] == str(tmp_path / "run")
    with pytest.raises(GenrecsysError, match="user_matrix_from_run"):  # reasoning never loads a run itself
        behaviour_matrix(split, run_cfg)


@pytest.mark.parametrize("bad,message", [(np.ones(3), "2-d"), (np.ones((2, 0)), "2-d"),
                                         (np.array([[1.0, np.inf]]), "NaN or inf")])
def test_pad_user_vectors_rejects_bad_arrays(bad, message):
    with pytest.raises(GenrecsysError, match=message):
        pad_user_vectors(bad)


def test_bad_encoder_config_is_rejected():
    with pytest.raises(GenrecsysError):
        EncoderConfig(epochs=0)


def test_importing_the_reasoning_package_does_not_import_torch_or_faiss():
    code = "import sys, genrecsys.reasoning; print('torch' in sys.modules, 'faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
