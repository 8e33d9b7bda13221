"""BERT4Rec specifics: cloze masking, training windows, and the [MASK] appended at
scoring time."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.models.bert4rec import BERT4Rec, BERT4RecConfig, cloze_mask, item_windows


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


def test_cloze_mask_hits_real_positions_at_the_configured_rate_and_never_padding():
    rng = np.random.default_rng(0)
    seqs = rng.integers(1, 50, size=(2000, 30))
    for row, pad in enumerate(rng.integers(0, 25, size=2000)):
        seqs[row, :pad] = 0
    masked = cloze_mask(seqs, 0.2, rng)
    assert not masked[seqs == 0].any()
    assert abs(masked[seqs > 0].mean() - 0.2) < 0.01


def test_window_that_drew_no_mask_gets_its_last_item_masked():
    seqs = np.array([[0, 0, 3, 4, 5], [0, 0, 0, 0, 0]])
    masked = cloze_mask(seqs, 1e-9, np.random.default_rng(0))
    assert masked.tolist() == [[False, False, False, False, True], [False] * 5]


def test_item_windows_hold_every_training_interaction_once(split):
    windows = item_windows(split.train, 4)
    assert windows.shape[1] == 4
    assert (windows > 0).sum() == split.train.nnz
    ours = np.sort(windows[windows > 0])
    assert np.array_equal(ours, np.sort(split.train.items))
    # the newest window of user 0 ends with the user's last training item
    assert windows[0, -1] == split.train.of(0)[-1]


def test_batches_replace_exactly_the_targets_by_the_mask_token(split):
    model = BERT4Rec(split, BERT4RecConfig(max_len=6, passes=2))
    batches = list(model.batches(split, 16, np.random.default_rng(0)))
    n_windows = len(item_windows(split.train, 6))
    assert sum(len(b["seqs"]) for b in batches) == 2 * n_windows
    for b in batches:
        seqs, targets = b["seqs"], b["targets"]
        at_mask = seqs == model.mask_id
        assert torch.equal(at_mask, targets > 0)
        assert ((targets >= 1) & (targets <= split.n_items))[at_mask].all()
        assert at_mask.any(1).all()


def test_score_appends_mask_after_the_last_item_and_drops_the_oldest(split, monkeypatch):
    model = BERT4Rec(split, BERT4RecConfig(max_len=5)).eval()
    seen = {}
    encode = model.encode

    def spy(seqs):
        seen["input"] = seqs.clone()
        return encode(seqs)

    monkeypatch.setattr(model, "encode", spy)
    seqs = torch.tensor([[9, 1, 2, 3, 4], [0, 0, 0, 7, 8]])
    with torch.no_grad():
        scores = model.score(torch.arange(2), seqs)
    m = model.mask_id
    assert seen["input"].tolist() == [[1, 2, 3, 4, m], [0, 0, 7, 8, m]]
    assert scores.shape == (2, split.n_items + 1)  # no column for [MASK]


def test_score_does_not_depend_on_the_padding_before_a_sequence(split):
    model = BERT4Rec(split, BERT4RecConfig(max_len=8)).eval()
    user = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        short = model.score(user, torch.tensor([[0, 3, 4, 5]]))
        for seqs in ([[0, 0, 0, 3, 4, 5]], [[0, 0, 0, 0, 0, 3, 4, 5]]):
            assert torch.allclose(model.score(user, torch.tensor(seqs)), short, atol=1e-5)
