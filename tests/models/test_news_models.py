"""Pieces of the news / CTR models: fast paths against plain twins, the interest-fusion
hook on every model, caches. The shared contract (fit, rank, save/load) is in
test_contract.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from genrecsys.data.schema import Dataset
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.experiment import build_model
from genrecsys.models.news import TransformerBlock, pack_left
from newsfixtures import TOKENIZER, news_params

NEWS = ["naml", "lstur", "nrms", "plmnr", "bst", "dcn", "pnn", "din"]


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles(n_users=12, length=8))


@pytest.fixture(scope="module")
def profiled_split():
    ds = block_cycles(n_users=12, length=8)
    topics = [["football", "nfl"] if u % 2 else ["cooking"] for u in range(12)]
    regions = [["Florida"] if u % 3 == 0 else [] for u in range(12)]
    users = ds.users.assign(topics=topics, regions=regions)
    return leave_one_out(Dataset(ds.name, ds.interactions, ds.items, users))


def _model(name, split, plm_dir, **params):
    torch.manual_seed(0)
    return build_model(name, {**news_params(name, plm_dir), **params}, split)


def test_targets_attend_to_the_history_exactly_like_masked_full_attention():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, 0.0).eval()
    B, L, C = 3, 5, 4
    x, t = torch.randn(B, L, 16), torch.randn(B, C, 16)
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[0, :2] = True
    fast = block.attend(t, x, pad)
    # reference: one sequence [history; targets]; a target sees the history and itself only
    seq = torch.cat([x, t], 1)
    blocked = torch.ones(L + C, L + C, dtype=torch.bool)
    blocked[:L, :L] = False
    blocked[L:, :L] = False
    blocked[L:, L:] = ~torch.eye(C, dtype=torch.bool)
    mask = blocked.unsqueeze(0).repeat(B, 1, 1)
    mask[:, :, :L] |= pad.unsqueeze(1)
    h = block.ln1(seq)
    a = block.attn(h, h, h, attn_mask=mask.repeat_interleave(4, 0), need_weights=False)[0]
    ref = seq + a
    ref = ref + block.ff(block.ln2(ref))
    assert torch.allclose(fast, ref[:, L:], atol=1e-5)


def test_din_activation_unit_equals_the_linear_layer_on_the_concatenation(split, tiny_plm_dir):
    m = _model("din", split, tiny_plm_dir)
    h, c = torch.randn(2, 5, 64), torch.randn(2, 3, 64)
    hh, cc = h.unsqueeze(1).expand(2, 3, 5, 64), c.unsqueeze(2).expand(2, 3, 5, 64)
    ref = m.att_in(torch.cat([hh, cc, hh - cc, hh * cc], -1))
    assert torch.allclose(m.activation_first_layer(h, c), ref, atol=1e-4)


def test_pack_left_keeps_token_order_and_drops_gaps():
    tok = torch.tensor([[5, 0, 0, 7, 8, 0], [0, 0, 0, 0, 0, 0], [1, 2, 0, 3, 0, 0]])
    assert pack_left(tok).tolist() == [[5, 7, 8], [0, 0, 0], [1, 2, 3]]


@pytest.mark.parametrize("name", NEWS)
def test_deduplicated_bucketed_encoding_equals_encoding_each_item_alone(name, split, tiny_plm_dir):
    m = _model(name, split, tiny_plm_dir).eval()
    ids = torch.tensor([[3, 1, 3, 0], [7, 12, 1, 20]])
    with torch.no_grad():
        fast = m.news_vectors(ids)[0]
        alone = torch.stack([m.encode_news(torch.tensor([i]))[0] for i in ids.view(-1).tolist()]).view(2, 4, -1)
    assert torch.allclose(fast, alone, atol=1e-5)


@pytest.mark.parametrize("name", NEWS)
def test_interest_fusion_feeds_topics_and_regions_into_every_model(name, profiled_split, tiny_plm_dir):
    m = _model(name, profiled_split, tiny_plm_dir, interest_fusion=True)
    batch = next(iter(m.batches(profiled_split, 8, np.random.default_rng(0))))
    m.train()
    loss = m.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert m.fusion.topic_emb.weight.grad.abs().sum() > 0 and m.fusion.region_emb.weight.grad.abs().sum() > 0
    m.eval()
    m.on_eval_start()
    seqs = torch.as_tensor(np.stack([profiled_split.train.of(0)[-5:]] * 2))
    with torch.no_grad():  # same history, different profiles -> different scores
        a, b = m.score(torch.tensor([0, 1]), seqs)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", NEWS)
def test_gated_interest_fusion_starts_as_the_ori_model_and_then_learns(name, profiled_split, tiny_plm_dir):
    ori = _model(name, profiled_split, tiny_plm_dir)
    after_ori = torch.get_rng_state()
    up = _model(name, profiled_split, tiny_plm_dir, interest_fusion=True, interest_fusion_form="gated")
    assert torch.equal(torch.get_rng_state(), after_ori)  # training draws what ORI's does
    seqs = torch.as_tensor(np.stack([profiled_split.train.of(0)[-5:]] * 2))
    scores = []
    for m in (ori, up):
        m.eval()
        m.on_eval_start()
        with torch.no_grad():
            scores.append(m.score(torch.tensor([0, 1]), seqs))
    assert torch.equal(scores[0], scores[1])  # the gate is 0: profiles do not count yet
    up.train()
    up.loss(next(iter(up.batches(profiled_split, 8, np.random.default_rng(0))))).backward()
    assert up.fusion.gate.grad is not None and up.fusion.gate.grad.abs() > 0


def test_interest_vector_is_the_mean_of_topic_and_region_embeddings(profiled_split, tiny_plm_dir):
    m = _model("dcn", profiled_split, tiny_plm_dir, interest_fusion=True)
    f = m.fusion
    users = torch.tensor([0, 1])  # user 0: cooking + Florida; user 1: football, nfl, no region
    captured = {}
    f.mlp.register_forward_hook(lambda mod, inp, out: captured.update(x=inp[0]))
    f(torch.zeros(2, 64), users)
    v_i = captured["x"][:, 64:]
    t, r = f.topics[users], f.regions[users]
    assert torch.allclose(v_i[0, :64], f.topic_emb(t[0, :1]).mean(0))
    assert torch.allclose(v_i[1, :64], f.topic_emb(t[1, :2]).mean(0))
    assert torch.allclose(v_i[0, 64:], f.region_emb(r[0, :1]).mean(0))
    assert (v_i[1, 64:] == 0).all()  # no region: a zero half


def test_interest_fusion_without_profile_columns_is_a_clear_error(split, tiny_plm_dir):
    from genrecsys.errors import GenrecsysError

    with pytest.raises(GenrecsysError, match="topics, regions"):
        _model("nrms", split, tiny_plm_dir, interest_fusion=True)


def test_news_models_use_decoupled_weight_decay(split, tiny_plm_dir):
    assert isinstance(_model("nrms", split, tiny_plm_dir).make_optimizer(1e-3, 0.01), torch.optim.AdamW)
    assert type(build_model("bpr", {}, split).make_optimizer(1e-3, 0.01)) is torch.optim.Adam


def test_an_empty_history_gives_finite_scores(split, tiny_plm_dir):
    for name in NEWS:
        m = _model(name, split, tiny_plm_dir).eval()
        m.on_eval_start()
        with torch.no_grad():
            s = m.score_candidates(torch.tensor([0]), torch.zeros(1, 4, dtype=torch.long), torch.tensor([[1, 2, 3]]))
        assert torch.isfinite(s).all(), name


def test_lstur_reads_histories_in_order_whatever_the_padding(split, tiny_plm_dir):
    from genrecsys.models.lstur import right_align

    hist = torch.tensor([[0, 0, 4, 5], [1, 2, 3, 6]])
    vecs = hist.unsqueeze(-1).float()
    out, lengths = right_align(hist, vecs)
    assert out[..., 0].tolist() == [[4, 5, 0, 0], [1, 2, 3, 6]] and lengths.tolist() == [2, 4]


def test_plm_token_states_are_cached_on_disk(tiny_plm_dir, tmp_path, monkeypatch):
    import transformers

    from genrecsys.models.plmnr import plm_token_states

    texts = ["stocks rise", "dinner recipes for busy weeks", ""]
    states, mask = plm_token_states(texts, tiny_plm_dir, 8, cache_dir=tmp_path)
    assert states.dtype == np.float16 and states.shape[:2] == mask.shape and mask.sum(1).tolist() == [4, 7, 2]
    assert len(list((tmp_path / "plm").glob("*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("the PLM was loaded again")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", boom)
    again, mask2 = plm_token_states(texts, tiny_plm_dir, 8, cache_dir=tmp_path)
    assert np.array_equal(states, again) and np.array_equal(mask, mask2)


def test_plmnr_freezes_the_language_model(split, tiny_plm_dir):
    m = _model("plmnr", split, tiny_plm_dir)
    names = [n for n, _ in m.named_parameters()]
    assert not any("plm" in n and "proj" not in n for n in names)
    assert "plm_states" not in m.state_dict()  # recomputed (or read from the cache), not saved


def test_item_vectors_project_into_the_token_sequence(tiny_plm_dir):
    ds = block_cycles(n_users=8, length=6)
    items = ds.items.assign(image=[list(np.random.default_rng(i).normal(size=6)) for i in range(len(ds.items))])
    split = leave_one_out(Dataset(ds.name, ds.interactions, items, ds.users))
    m = build_model("nrms", {"text": {"tokenizer": str(TOKENIZER), "vector_column": "image"}}, split)
    x, mask = m.tokens(torch.tensor([1, 2]))
    assert m.tokens.vector_proj.in_features == 6 and mask[:, -1].all()
    m.loss(next(iter(m.batches(split, 4, np.random.default_rng(0))))).backward()
    assert m.tokens.vector_proj.weight.grad.abs().sum() > 0
