"""LLM-embedding retrieval: user text by hand, zero-shot = cosine in the encoder's space,
fine-tuning starts from exactly that ranking."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.models.textretrieval import TextRetrieval, TextRetrievalConfig


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


def test_user_text_is_the_recent_titles_most_recent_first(split):
    m = TextRetrieval(split, TextRetrievalConfig(recent=2, finetune=False))
    assert m._user_text([0, 0, 3, 1, 2]) == f"{m.titles[2]}; {m.titles[1]}"
    assert m._user_text([0, 0]) == ""
    assert not m.trainable and not m.reads_users()


def test_zero_shot_scores_are_cosines_and_finetuning_starts_from_them(split):
    zs = TextRetrieval(split, TextRetrievalConfig(finetune=False)).eval()
    ft = TextRetrieval(split, TextRetrievalConfig(finetune=True)).eval()
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-8:] for u in range(3)]))
    with torch.no_grad():
        a, b = zs.score(torch.arange(3), seqs), ft.score(torch.arange(3), seqs)
    assert torch.allclose(a, b) and torch.isinf(a[:, 0]).all()
    u = zs._encode([zs._user_text(row) for row in seqs.tolist()])
    by_hand = F.normalize(u, dim=1) @ F.normalize(zs.item_text[1:], dim=1).T
    assert torch.allclose(a[:, 1:], by_hand, atol=1e-5)


def test_finetuning_examples_are_fixed_cut_points(split):
    m = TextRetrieval(split, TextRetrievalConfig(cuts_per_user=2))
    vecs, targets = m._training_examples(split)
    again = m._training_examples(split)[1]
    users_with_two = int((split.train.lengths() >= 2).sum())
    assert len(targets) == len(vecs) <= 2 * users_with_two and torch.equal(targets, again)
    assert targets.min() >= 1 and targets.max() <= split.n_items
