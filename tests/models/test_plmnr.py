"""PLM-NR's news encoder: frozen PLM token states, with or without trainable word pieces."""
from __future__ import annotations

import pytest
import torch

from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.experiment import build_model
from newsfixtures import news_params


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles(n_users=12, length=8))


def _model(split, plm_dir, **params):
    torch.manual_seed(0)
    return build_model("plmnr", {**news_params("plmnr", plm_dir), **params}, split).eval()


def _title_embedding_grad(m) -> torch.Tensor:
    """Gradient reaching the title word-piece rows of the item token table."""
    ids = torch.arange(1, m.n_items + 1)
    m.zero_grad()
    m.encode_news(ids).sum().backward()
    cols = m.specials.columns(("title",))
    rows = m.specials.tokens[ids][:, cols].unique()
    rows = rows[rows > 0]
    return m.specials.emb.weight.grad[rows]


def test_word_pieces_are_pooled_beside_the_frozen_states_by_default(split, tiny_plm_dir):
    m = _model(split, tiny_plm_dir)
    assert m.special_segments[0] == "title"
    assert _title_embedding_grad(m).abs().sum() > 0  # trainable per-item capacity reaches the encoder


def test_frozen_only_encoder_ignores_the_title_word_pieces(split, tiny_plm_dir):
    m = _model(split, tiny_plm_dir, word_tokens=False)
    assert "title" not in m.special_segments
    assert _title_embedding_grad(m).abs().sum() == 0
    # changing only the title word-piece rows leaves every news vector unchanged
    ids = torch.arange(1, m.n_items + 1)
    m2 = _model(split, tiny_plm_dir, word_tokens=False)
    with torch.no_grad():
        cat_rows = m2.specials.tokens[:, m2.specials.columns(("category", "subcategory"))].unique()
        title_rows = m2.specials.tokens[:, m2.specials.columns(("title",))].unique()
        only_title = torch.tensor(sorted(set(title_rows.tolist()) - set(cat_rows.tolist()) - {0}))
        ref = m2.encode_news(ids).clone()
        m2.specials.emb.weight[only_title] += 1.0
        assert torch.allclose(m2.encode_news(ids), ref)
