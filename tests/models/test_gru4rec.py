"""GRU4Rec specifics: left padding is inert, and the fast encoder agrees with its
packed reference twin."""
from __future__ import annotations

import pytest
import torch

from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.models.gru4rec import GRU4Rec, GRU4RecConfig, shift_padding


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


def _model(split, **over):
    torch.manual_seed(0)
    return GRU4Rec(split, GRU4RecConfig(**over)).eval()


def test_score_does_not_depend_on_the_padding_before_a_sequence(split):
    model = _model(split, n_layers=2)
    items = torch.tensor([3, 7, 1, 12, 5])
    seqs = [torch.cat([torch.zeros(pad, dtype=torch.long), items]) for pad in (0, 3, 20, 45)]
    with torch.no_grad():
        short = model.score(torch.zeros(1, dtype=torch.long), items[None])
        for row in seqs:
            assert torch.allclose(model.score(torch.zeros(1, dtype=torch.long), row[None]), short, atol=1e-6)


def test_outputs_are_zero_at_padding(split):
    model = _model(split)
    seqs = torch.tensor([[0, 0, 4, 2], [0, 0, 0, 0]])
    with torch.no_grad():
        h = model.encode(seqs)
    assert torch.all(h[0, :2] == 0) and torch.all(h[1] == 0)
    assert h[0, 2:].abs().sum() > 0


@pytest.mark.parametrize("n_layers", [1, 2])
def test_fast_encoder_agrees_with_packed_reference(split, n_layers):
    model = _model(split, n_layers=n_layers)
    g = torch.Generator().manual_seed(1)
    seqs = torch.randint(1, split.n_items + 1, (6, 9), generator=g)
    for row, pad in enumerate([0, 1, 4, 8, 9, 2]):
        seqs[row, :pad] = 0
    with torch.no_grad():
        assert torch.allclose(model.encode(seqs), model.encode_packed(seqs), atol=1e-6)


def test_padding_stays_inert_after_training_moves_its_embedding_row(split):
    model = GRU4Rec(split).train()
    optim = torch.optim.Adam(model.parameters(), lr=0.1)
    batch = {"seqs": torch.tensor([[0, 0, 1, 2, 3]]), "targets": torch.tensor([[0, 0, 2, 3, 4]])}
    for _ in range(3):
        optim.zero_grad()
        model.loss(batch).backward()
        optim.step()
    model.eval()
    assert model.item_emb.weight[0].abs().sum() > 0  # the output layer trains the padding row
    with torch.no_grad():
        user = torch.zeros(1, dtype=torch.long)
        assert torch.allclose(model.score(user, torch.tensor([[0, 0, 0, 1, 2]])),
                              model.score(user, torch.tensor([[1, 2]])), atol=1e-6)


def test_shift_padding_round_trips():
    seqs = torch.tensor([[0, 0, 1, 2], [5, 6, 7, 8], [0, 0, 0, 9]])
    lengths = (seqs > 0).sum(1)
    right = shift_padding(seqs, lengths, to_right=True)
    assert right.tolist() == [[1, 2, 0, 0], [5, 6, 7, 8], [9, 0, 0, 0]]
    assert torch.equal(shift_padding(right, lengths, to_right=False), seqs)
