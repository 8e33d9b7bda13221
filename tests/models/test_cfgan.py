"""CFGAN: the masking of the fake sample, the two optimizers inside one loop, and a
short fit on the synthetic blocks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecsys.config import EvalConfig, TrainConfig
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.errors import GenrecsysError
from genrecsys.models.cfgan import CFGAN, CFGANConfig, fake_vector, sample_unpurchased
from genrecsys.train.loop import evaluate, fit

FULL = EvalConfig(ks=(1, 5, 10), protocol="full")


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


def _cfg(**over):
    return TrainConfig(**{"progress": False, "patience": 1000, "batch_size": 32, "seed": 0, "lr": 1e-3,
                          "epochs": 60, "threads": 1, **over})


@pytest.fixture(scope="module")
def fitted(split):
    torch.manual_seed(0)
    model = CFGAN(split)
    fit(model, split, _cfg(), FULL, max_len=8)
    return model


def test_the_fake_sample_keeps_g_on_purchased_and_pm_items_and_zeros_the_rest():
    generated = torch.tensor([[0.9, 0.2, 0.4, 0.6, 0.8]])
    real = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0]])  # column 0 is padding
    pm = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]])  # item 2 sampled for partial masking
    assert fake_vector(generated, real, pm)[0].tolist() == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.0])
    # without PM (the ZR scheme) only the purchased entries survive
    assert fake_vector(generated, real, torch.zeros_like(pm))[0].tolist() == pytest.approx([0.0, 0.2, 0.0, 0.6, 0.0])


def test_sampled_items_are_unpurchased_never_padding_and_about_the_asked_fraction():
    torch.manual_seed(0)
    real = (torch.rand(64, 201) < 0.1).float()
    real[:, 0] = 0.0
    assert sample_unpurchased(real, 1.0)[:, 1:].tolist() == (1.0 - real[:, 1:]).tolist()  # all unpurchased
    assert sample_unpurchased(real, 0.0).sum() == 0
    mask = sample_unpurchased(real, 0.7)
    assert (mask[:, 0] == 0).all() and (mask * real).sum() == 0
    assert mask.sum() / (1.0 - real[:, 1:]).sum() == pytest.approx(0.7, abs=0.02)


def test_loss_updates_the_discriminator_and_leaves_the_generator_to_the_loops_step(split):
    torch.manual_seed(0)
    model = CFGAN(split, CFGANConfig(d_steps=2))
    g_opt = model.make_optimizer(1e-3, 0.0)
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    loss = model.loss({"users": torch.arange(8)})
    assert all(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    d1 = [p.detach().clone() for p in model.discriminator.parameters()]
    g_opt.zero_grad()
    loss.backward()
    g_opt.step()  # what the loop does with the returned loss: G moves, D does not
    assert all(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(d1, model.discriminator.parameters()))
    assert sum(len(g["params"]) for g in g_opt.param_groups) == len(list(model.generator.parameters()))


def test_a_short_fit_ranks_the_held_out_item_high(split, fitted):
    assert evaluate(fitted, split, "test", FULL, max_len=8).metrics["hit@5"] >= 0.8


def test_save_load_gives_identical_scores_and_carries_the_discriminators_adam(split, fitted, tmp_path):
    torch.save(fitted.state_dict(), tmp_path / "m.pt")
    clone = CFGAN(split)
    clone.load_state_dict(torch.load(tmp_path / "m.pt"))
    users = torch.arange(6)
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-8:] for u in range(6)]))
    for m in (fitted, clone):
        m.eval()
        m.on_eval_start()
    with torch.no_grad():
        assert torch.allclose(fitted.score(users, seqs), clone.score(users, seqs), atol=1e-5)
    clone.make_optimizer(1e-3, 0.0)  # the state loaded before the optimizer existed lands in it
    saved = fitted.d_optimizer().state_dict()["state"]
    restored = clone.d_optimizer().state_dict()["state"]
    assert saved.keys() == restored.keys() and saved
    assert all(torch.equal(saved[k]["exp_avg"], restored[k]["exp_avg"]) for k in saved)


def test_resume_after_interruption_equals_an_uninterrupted_run(split, tmp_path):
    torch.manual_seed(0)
    straight = CFGAN(split)
    fit(straight, split, _cfg(epochs=4), FULL, max_len=8, run_dir=tmp_path / "a")
    torch.manual_seed(0)
    first = CFGAN(split)
    fit(first, split, _cfg(epochs=2), FULL, max_len=8, run_dir=tmp_path / "b")  # "crash" after 2
    torch.manual_seed(1)  # the resumed run must not depend on its fresh initial weights
    resumed = CFGAN(split)
    fit(resumed, split, _cfg(epochs=4), FULL, max_len=8, run_dir=tmp_path / "b", resume=True)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        if k != "_extra_state":
            assert torch.equal(a, b), k


def test_an_unknown_scheme_is_an_error():
    with pytest.raises(GenrecsysError, match="scheme"):
        CFGANConfig(scheme="zz")
