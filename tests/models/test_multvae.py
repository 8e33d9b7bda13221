"""Mult-VAE / Mult-DAE specifics the shared contract test does not see: the KL weight's
annealing schedule, the multinomial loss by hand, and the input that scoring folds in."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.models.multvae import MultDAE, MultDAEConfig, MultVAE, MultVAEConfig


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


def test_beta_rises_linearly_with_updates_to_its_cap_and_survives_a_reload(split):
    vae = MultVAE(split, MultVAEConfig(anneal_cap=0.2, anneal_steps=10))
    batch = {"users": torch.arange(4)}
    betas = []
    for _ in range(4):
        betas.append(vae.beta())
        vae.loss(batch)
    assert betas == pytest.approx([0.0, 0.1, 0.2, 0.2])
    clone = MultVAE(split, MultVAEConfig(anneal_cap=0.2, anneal_steps=10))
    clone.load_state_dict(vae.state_dict())
    assert int(clone.steps) == 4  # a resumed run continues its schedule
    dae = MultDAE(split, MultDAEConfig())
    dae.loss(batch)
    assert int(dae.steps) == 0 and not dae.variational


def test_the_dae_loss_is_the_multinomial_log_likelihood_by_hand(split):
    torch.manual_seed(0)
    dae = MultDAE(split, MultDAEConfig(dropout=0.0)).eval()
    users = torch.tensor([0, 1])
    x = dae.rows.dense(users)
    logits = dae.score(users, torch.zeros(2, 1, dtype=torch.long))  # no sequence items: the training rows
    logp = torch.log_softmax(logits[:, 1:], dim=1)
    by_hand = -np.mean([float(logp[b][x[b, 1:] > 0].sum().detach()) for b in range(2)])
    dae.train()
    with torch.no_grad():
        assert float(dae.loss({"users": users})) == pytest.approx(by_hand, rel=1e-5)  # dropout 0: same input


def test_scoring_folds_the_sequence_into_the_users_row(split):
    torch.manual_seed(0)
    vae = MultVAE(split).eval()
    users = torch.tensor([0])
    new_item = int(next(i for i in range(1, split.n_items + 1) if i not in set(split.train.of(0).tolist())))
    with torch.no_grad():
        plain = vae.score(users, torch.zeros(1, 1, dtype=torch.long))
        folded = vae.score(users, torch.tensor([[0, new_item]]))
    assert not torch.allclose(plain[:, 1:], folded[:, 1:])
    assert torch.isinf(plain[:, 0]).all() and torch.isfinite(plain[:, 1:]).all()


def test_bad_settings_are_one_line_errors(block_dataset_dir, tmp_path, capsys):
    from genrecsys.cli.main import main
    from genrecsys.errors import GenrecsysError
    from genrecsys.models.textretrieval import TextRetrievalConfig

    for bad in ({"dropout": 1.0}, {"latent_size": 0}, {"anneal_steps": 0}):
        with pytest.raises(GenrecsysError):
            MultVAEConfig(**bad)
    with pytest.raises(GenrecsysError):
        TextRetrievalConfig(recent=0)
    rc = main(["train", "--model", "multvae", "--dataset", str(block_dataset_dir), "--epochs", "1", "--no-progress", "--output-dir", str(tmp_path / "r"), "--param", "dropout=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "dropout in [0, 1)" in err[0]
