"""TIGER: window-batched training equals separate prefixes, exact scores, beam search."""
import numpy as np
import pytest
import torch

from genrecsys.config import EvalConfig, TrainConfig
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.errors import GenrecsysError
from genrecsys.experiment import build_model
from genrecsys.generative.beam import beam_search
from genrecsys.generative.tokenization import CodeTokenizer
from genrecsys.train.loop import fit
from windowcheck import window_loss_and_prefix_losses

SMALL = {"codes": "digits", "d_model": 32, "ffn_dim": 64, "layers": 2, "heads": 2, "max_len": 8}


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


@pytest.fixture(scope="module")
def trained(split):
    torch.manual_seed(0)
    m = build_model("tiger", SMALL, split)
    fit(m, split, TrainConfig(epochs=30, lr=0.01, batch_size=32, progress=False, seed=0), EvalConfig(ks=(5, 10)), max_len=8)
    return m.eval()


@pytest.mark.parametrize("params", [{}, {"user_buckets": 7, "item_id_embedding": True}])
def test_one_window_loss_is_the_mean_of_its_prefixes_trained_separately(split, params):
    """Block-causal attention: position p sees items <= p only, so a window of L targets
    costs one pass and gives the same loss as L separate (prefix -> next item) samples."""
    torch.manual_seed(1)
    m = build_model("tiger", {**SMALL, **params}, split).eval()  # no dropout
    whole, parts = window_loss_and_prefix_losses(m)
    assert torch.allclose(whole, parts, atol=1e-5)


def test_exact_scores_are_a_distribution_over_the_catalog_and_beam_search_agrees(split, trained):
    users = torch.arange(6)
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-8:] for u in range(6)]))
    with torch.no_grad():
        scores = trained.score(users, seqs)  # (6, I+1)
    assert torch.allclose(scores[:, 1:].exp().sum(1), torch.ones(6), atol=1e-4)
    result = beam_search(trained, users, seqs, k=5, beam=split.n_items)  # an unbounded beam is exact
    assert result.invalid == 0
    assert np.array_equal(result.items, torch.topk(scores, 5).indices.numpy())
    assert np.allclose(result.scores, torch.topk(scores, 5).values.numpy(), atol=1e-4)


def test_constrained_beam_never_returns_a_seen_or_invalid_item(split, trained):
    users = torch.arange(8)
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-8:] for u in range(8)]))
    seen = [split.train.of(u) for u in range(8)]
    result = beam_search(trained, users, seqs, k=4, beam=8, seen=seen)
    for row, items in enumerate(result.items):
        assert (items > 0).all() and not set(items) & set(seen[row].tolist())
    free = beam_search(trained, users, seqs, k=4, beam=8, constrained=False)
    assert free.generated == 32 and 0 <= free.invalid <= 32  # counted, never mapped to an item


def test_trained_model_ranks_the_next_item_of_the_cycle_first(split, trained):
    from genrecsys.train.loop import evaluate

    assert evaluate(trained, split, "test", EvalConfig(ks=(1, 5)), max_len=8).metrics["hit@5"] >= 0.9


def test_code_tokens_have_one_range_per_level_and_decode_back():
    tok = CodeTokenizer(np.array([[0, 0, 0], [1, 2, 0], [1, 2, 1], [0, 0, 0]]), sizes=(2, 3, 2))
    assert tok.level_range(1) == (6, 9) and tok.vocab_size == 4 + 7
    assert [tok.decode_item(tok.codes[i].tolist()) for i in (1, 2, 3)] == [1, 2, 3]
    with pytest.raises(ValueError, match="outside"):
        CodeTokenizer(np.array([[0, 0], [2, 0]]), sizes=(2, 2))


@pytest.mark.parametrize("bad", [{"heads": 3}, {"max_len": 0}, {"dropout": 1.0}])
def test_a_bad_setting_fails_with_one_line(split, bad):
    with pytest.raises(GenrecsysError, match="tiger") as err:
        build_model("tiger", {**SMALL, **bad}, split)
    assert "\n" not in str(err.value)
