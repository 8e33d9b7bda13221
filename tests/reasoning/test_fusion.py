"""RELAND's fusion layer (§3.2.2) and the "+f_item" item features, alone and in the six
backbones of Table 2."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from genrecsys.config import EvalConfig, TrainConfig
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.errors import GenrecsysError
from genrecsys.experiment import build_model
from genrecsys.reasoning.fusion import (ItemFeatures, UserFusion, encode_texts, item_text_matrix, item_texts,
                                        load_text_matrix, user_text_matrix)
from genrecsys.train.loop import evaluate, fit

BACKBONES = ["neumf", "ngcf", "lightgcn", "gru4rec", "sasrec", "duorec", "hstu"]
FULL = EvalConfig(ks=(1, 5, 10), protocol="full")


def block_of_users(split, n_groups: int) -> np.ndarray:
    """(U+1, n_groups) one-hot of each user's block at row u + 1 (row 0 = padding, zeros):
    block_cycles puts user u{k} in block k % n_groups."""
    out = np.zeros((split.n_users + 1, n_groups), np.float32)
    for u, raw in enumerate(split.user_ids):
        out[u + 1, int(raw[1:]) % n_groups] = 1.0
    return out


def block_of_items(split, n_groups: int, items_per_group: int) -> np.ndarray:
    """(I+1, n_groups) one-hot of each item's block; row 0 (padding) is zeros."""
    out = np.zeros((split.n_items + 1, n_groups), np.float32)
    for i, raw in enumerate(split.item_ids[1:], start=1):
        out[i, (int(raw[1:]) - 1) // items_per_group] = 1.0
    return out


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


@pytest.fixture(scope="module")
def text_files(split, tmp_path_factory):
    """user_text / item_text .npy files for block_cycles (block one-hots plus noise columns)."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("text")
    user = np.hstack([block_of_users(split, 2), rng.normal(size=(split.n_users + 1, 6))]).astype(np.float32)
    item = np.hstack([block_of_items(split, 2, 10), rng.normal(size=(split.n_items + 1, 5))]).astype(np.float32)
    np.save(d / "user.npy", user)
    np.save(d / "item.npy", item)
    return {"user_text": str(d / "user.npy"), "item_text": str(d / "item.npy")}


# --- the fusion layer -------------------------------------------------------------

def test_attention_weights_sum_to_one_and_respond_to_the_inputs():
    torch.manual_seed(0)
    fusion = UserFusion(np.random.default_rng(0).normal(size=(6, 7)).astype(np.float32), d=4)  # 5 users
    e = torch.randn(5, 4)
    users = torch.arange(5)
    alpha, _ = fusion.attention(e, users)
    assert alpha.shape == (5, 2)
    assert torch.allclose(alpha.sum(-1), torch.ones(5))
    with torch.no_grad():
        fusion.w.copy_(torch.tensor([3.0, 0.0, 0.0, 0.0]))
    big = e.clone()
    big[:, 0] = 10.0  # e . w far above z . w: the behaviour vector wins
    assert (fusion.attention(big, users)[0][:, 0] > 0.99).all()
    big[:, 0] = -10.0  # and far below: the text wins
    assert (fusion.attention(big, users)[0][:, 1] > 0.99).all()


def test_fused_vector_is_the_attention_weighted_mix_of_id_and_text():
    fusion = UserFusion(np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32), d=4)
    e = torch.randn(3, 4)
    users = torch.tensor([2, 0, 2])
    alpha, z = fusion.attention(e, users)
    assert torch.allclose(z, fusion.proj(fusion.text[users + 1]))  # user u is text row u + 1
    logits = torch.stack([e @ fusion.w, z @ fusion.w], -1)  # Eq. 5 written out
    a = torch.softmax(logits, -1)
    assert torch.allclose(fusion(e, users), a[:, :1] * e + a[:, 1:] * z)


def test_fusion_broadcasts_one_text_vector_over_sequence_positions():
    fusion = UserFusion(np.eye(3, dtype=np.float32), d=4)  # 2 users
    e = torch.randn(2, 6, 4)  # (B, L, D): a sequence model's states
    users = torch.tensor([1, 0])
    out = fusion(e, users)
    assert out.shape == e.shape
    assert torch.allclose(out[:, 3], fusion(e[:, 3], users))


def test_user_vectors_of_the_wrong_dimension_are_a_clear_error():
    fusion = UserFusion(np.eye(4, dtype=np.float32), d=4)  # 3 users
    with pytest.raises(GenrecsysError, match="dimension 5.*built for 4"):
        fusion(torch.randn(3, 5), torch.arange(3))
    with pytest.raises(GenrecsysError, match="2 user vectors but 3 users"):
        fusion(torch.randn(2, 4), torch.arange(3))
    with pytest.raises(GenrecsysError, match="item table"):
        ItemFeatures(np.eye(3, dtype=np.float32), d=4)(torch.randn(3, 5))


def test_gradient_reaches_the_projection_and_the_attention_vector():
    fusion = UserFusion(np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32), d=4)
    e = torch.randn(4, 4, requires_grad=True)
    fusion(e, torch.arange(4)).pow(2).sum().backward()
    assert fusion.proj.weight.grad.abs().sum() > 0
    assert fusion.w.grad.abs().sum() > 0
    assert e.grad.abs().sum() > 0


def test_item_features_start_as_the_id_table_and_learn_from_text():
    feats = ItemFeatures(np.random.default_rng(3).normal(size=(6, 3)).astype(np.float32), d=4)
    table = torch.randn(6, 4)
    assert torch.allclose(feats(table), table)  # identity on the ID half at initialisation
    feats(table).pow(2).sum().backward()
    assert feats.mix.weight.grad[:, 4:].abs().sum() > 0  # the text half gets a gradient from the start


# --- loading and encoding text matrices -------------------------------------------

def test_load_text_matrix_reads_npy_files_as_float32(tmp_path):
    np.save(tmp_path / "m.npy", np.arange(6, dtype=np.float64).reshape(3, 2))
    m = load_text_matrix(str(tmp_path / "m.npy"), 3, "user_text")
    assert m.dtype == np.float32 and m.shape == (3, 2)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 2)), "expected 3 rows, got 4"),
    (np.zeros(3), "2-d matrix"),
    (np.zeros((3, 2, 2)), "2-d matrix"),
    (np.array([[0.0, 1.0], [np.nan, 0.0], [0.0, 0.0]]), "NaN or inf, first row 1"),
    (np.array([["a"], ["b"], ["c"]]), "expected numbers"),
])
def test_load_text_matrix_rejects_bad_matrices_with_a_clear_error(bad, message):
    with pytest.raises(GenrecsysError, match=message) as err:
        load_text_matrix(bad, 3, "user_text")
    assert "user_text" in str(err.value)


def test_a_missing_text_file_names_the_field(tmp_path):
    with pytest.raises(GenrecsysError, match="item_text: file not found"):
        ItemFeatures.maybe(str(tmp_path / "nope.npy"), 3, 4)


def test_a_user_text_without_the_padding_row_fails_when_the_model_is_built(split, tmp_path):
    np.save(tmp_path / "u.npy", np.zeros((split.n_users, 4), np.float32))
    with pytest.raises(GenrecsysError, match=f"user_text .*expected {split.n_users + 1} rows.*padding row 0"):
        build_model("sasrec", {"user_text": str(tmp_path / "u.npy")}, split)


def test_fusing_every_user_at_once_reads_rows_one_to_u():
    text = np.random.default_rng(4).normal(size=(4, 3)).astype(np.float32)
    fusion = UserFusion(text, d=2)
    e = torch.randn(3, 2)
    assert torch.allclose(fusion(e), fusion(e, torch.arange(3)))


def test_item_texts_join_title_and_genres(split):
    texts = item_texts(split)
    assert len(texts) == split.n_items + 1 and texts[0] == ""
    row = int(np.flatnonzero(split.item_ids == "i12")[0])
    assert texts[row] == "Item 12 (group 1). Genres: g1"


def test_text_is_encoded_with_the_embedded_minilm_and_cached_by_content(minilm, tmp_path, monkeypatch):
    model_dir = minilm
    texts = ["Toy Story. Genres: Animation, Comedy", "Heat. Genres: Action, Crime", "Toy Story. Genres: Animation, Comedy"]
    vectors = encode_texts(texts, model_dir, batch_size=2, cache_dir=tmp_path)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(vectors[0], vectors[2], atol=1e-4) and not np.allclose(vectors[0], vectors[1])
    assert len(list((tmp_path / "text_vectors").glob("*.npy"))) == 1

    import sentence_transformers

    def no_model(*args, **kwargs):
        raise AssertionError("a cached encoding loaded the model again")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", no_model)
    assert np.array_equal(encode_texts(texts, model_dir, cache_dir=tmp_path), vectors)
    with pytest.raises(AssertionError):  # other texts are another cache entry
        encode_texts(texts[:2], model_dir, cache_dir=tmp_path)
    monkeypatch.undo()

    users = user_text_matrix([texts[1], texts[0], texts[1]], model_dir, cache_dir=tmp_path)
    assert users.shape == (4, 384) and not users[0].any()  # row 0 is padding
    assert np.allclose(users[1], vectors[1], atol=1e-4) and np.allclose(users[2], vectors[0], atol=1e-4)
    assert np.array_equal(users[3], users[1])
    split = leave_one_out(block_cycles())
    items = item_text_matrix(split, model_dir, cache_dir=tmp_path)
    assert items.shape == (split.n_items + 1, 384) and not items[0].any()
    assert np.allclose(np.linalg.norm(items[1:], axis=1), 1.0, atol=1e-4)  # MiniLM's normalised sentence vectors


def test_importing_the_reasoning_package_does_not_import_torch():
    code = "import sys, genrecsys.reasoning; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the six backbones --------------------------------------------------------------

@pytest.mark.parametrize("name", BACKBONES)
def test_a_default_config_builds_the_plain_id_model(name, split):
    model = build_model(name, {}, split)
    assert model.user_fusion is None and model.item_features is None
    assert not [k for k in model.state_dict() if "fusion" in k or "item_features" in k]


@pytest.mark.parametrize("name", BACKBONES)
def test_each_backbone_trains_with_user_and_item_text(name, split, text_files, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, text_files, split)
    keys = set(model.state_dict())
    assert {"user_fusion.proj.weight", "user_fusion.w", "item_features.mix.weight"} <= keys
    assert "user_fusion.text" not in keys  # the text is an input named by the config, not a weight

    batch = next(iter(model.batches(split, 16, np.random.default_rng(0))))
    model.loss(batch).backward()
    for p in (model.user_fusion.proj.weight, model.user_fusion.w, model.item_features.mix.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.zero_grad()

    fit(model, split, TrainConfig(progress=False, epochs=2, lr=0.01, batch_size=32, seed=0), FULL, max_len=8)
    users = torch.arange(6)
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-8:] for u in range(6)]))
    model.eval()
    model.on_eval_start()
    with torch.no_grad():
        scores = model.score(users, seqs)
    assert scores.shape == (6, split.n_items + 1) and torch.isfinite(scores[:, 1:]).all()

    torch.save(model.state_dict(), tmp_path / "m.pt")
    clone = build_model(name, text_files, split)
    clone.load_state_dict(torch.load(tmp_path / "m.pt"))
    clone.eval()
    clone.on_eval_start()
    with torch.no_grad():
        assert torch.allclose(clone.score(users, seqs), scores, atol=1e-5)


def _scores(model, split, n=6):
    users = torch.arange(n)
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-8:] for u in range(n)]))
    model.eval()
    model.on_eval_start()
    with torch.no_grad():
        return model.score(users, seqs)


@pytest.mark.parametrize("name", BACKBONES)
def test_gated_reland_starts_as_exactly_the_id_only_model_and_then_learns(name, split, text_files):
    torch.manual_seed(0)
    plain = build_model(name, {}, split)
    after_plain = torch.get_rng_state()
    torch.manual_seed(0)
    gated = build_model(name, {**text_files, "user_fusion": "gated"}, split)
    # the RNG is where the ID-only build left it, so training draws the same dropout masks and batches
    assert torch.equal(torch.get_rng_state(), after_plain)
    assert torch.equal(_scores(gated, split), _scores(plain, split))  # same weights, identity fusion
    gated.train()
    batch = next(iter(gated.batches(split, 16, np.random.default_rng(0))))
    gated.loss(batch).backward()
    for gate in (gated.user_fusion.gate, gated.item_features.gate):  # both gates learn from the first step
        assert gate.grad is not None and gate.grad.abs() > 0
    assert not hasattr(gated.user_fusion, "w") and not hasattr(gated.item_features, "mix")


def test_gated_fusion_is_the_identity_until_its_gate_moves():
    fusion = UserFusion(np.eye(4, dtype=np.float32), d=8, form="gated")
    e = torch.randn(3, 5, 8)
    assert torch.equal(fusion(e, torch.arange(3)), e)
    with torch.no_grad():
        fusion.gate.fill_(1.0)
    alpha, z = fusion.attention(e, torch.arange(3))
    assert torch.allclose(fusion(e, torch.arange(3)), e + alpha[..., 1:] * z)
    assert torch.allclose(alpha[..., 1], torch.full((3, 5), float(np.tanh(1.0))), atol=1e-6)
    with pytest.raises(GenrecsysError, match="attention, gated"):
        UserFusion(np.eye(4, dtype=np.float32), d=8, form="sum")
    items = ItemFeatures(np.eye(5, dtype=np.float32), d=8, form="gated")
    table = torch.randn(5, 8)
    assert torch.equal(items(table), table)


def test_fused_neumf_full_scores_match_its_pairwise_forward(split, text_files):
    torch.manual_seed(0)
    model = build_model("neumf", text_files, split).eval()
    users = torch.arange(5)
    items = torch.arange(split.n_items + 1)
    with torch.no_grad():
        full = model.score(users, torch.zeros(5, 1, dtype=torch.long))
        pairs = model(users[:, None].expand(5, len(items)), items[None, :].expand(5, -1))
    assert torch.allclose(full, pairs, atol=1e-5)


def test_fused_gru4rec_padded_and_packed_encoders_agree(split, text_files):
    torch.manual_seed(0)
    model = build_model("gru4rec", text_files, split).eval()
    seqs = torch.as_tensor(np.stack([np.concatenate([np.zeros(3, np.int64), split.train.of(u)[-5:]]) for u in range(4)]))
    with torch.no_grad():
        assert torch.allclose(model.encode(seqs), model.encode_packed(seqs), atol=1e-5)


def test_rationale_vectors_that_carry_the_block_lift_a_sparse_model(tmp_path):
    """Two training items per user among 20 per block: IDs alone barely find a user's
    block, a text vector naming it does (hit@10 within the block is ~10/18)."""
    split = leave_one_out(block_cycles(n_users=80, n_groups=4, items_per_group=20, length=4))
    np.save(tmp_path / "user.npy", block_of_users(split, 4))
    hits = {}
    for params in ({}, {"user_text": str(tmp_path / "user.npy")}):
        model = build_model("neumf", params, split)
        fit(model, split, TrainConfig(progress=False, epochs=20, lr=0.01, batch_size=32, seed=0), FULL, max_len=8)
        hits[bool(params)] = evaluate(model, split, "test", FULL, max_len=8).metrics["hit@10"]
    assert hits[True] > hits[False] + 0.2, hits
