"""GenRec: inputs as in §4.1, the two training objectives, exact scoring, beam search."""
import json

import numpy as np
import pytest
import torch

from genrecsys.config import EvalConfig, TrainConfig
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.experiment import build_model
from genrecsys.generative.beam import beam_search
from genrecsys.generative.tokenization import BEG, END, MASK, PAD
from genrecsys.train.loop import fit
from windowcheck import window_loss_and_prefix_losses

SMALL = {"d_model": 32, "ffn_dim": 64, "layers": 1, "heads": 2}


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


@pytest.fixture(scope="module")
def trained(split):
    torch.manual_seed(0)
    m = build_model("genrec", {}, split)
    fit(m, split, TrainConfig(epochs=15, lr=3e-3, batch_size=32, progress=False, seed=0), EvalConfig(ks=(5, 10)), max_len=8)
    return m.eval()


def test_encoder_input_shares_item_id_across_subtokens_and_user_id_on_user_tokens(split):
    m = build_model("genrec", SMALL, split)
    users = torch.tensor([3])
    hist = torch.tensor([[0, 0, 5, 12, m.mask_item]])  # left-padded history + [MASK]
    x, keep = m.encoder_inputs(users, hist)
    B, T = 1, m.tok.tokens_per_item
    tokens = m.item_tokens[hist].reshape(1, -1)
    n_real = 1 + len(m.tok.user_tokens(3)) + 2 * T + 1 + 1
    assert keep.sum().item() == n_real and keep[0, :n_real].all()  # right-padded, no holes
    # recompute the pieces: token + user/item id embeddings
    seq = [BEG] + m.tok.user_tokens(3) + m.tok.item_tokens(5) + m.tok.item_tokens(12) + [MASK, END]
    uid = [0] + [4] * len(m.tok.user_tokens(3)) + [0] * (2 * T + 2)
    iid = [0] * (1 + len(m.tok.user_tokens(3))) + [5] * T + [12] * T + [0, 0]
    want = m.bart.shared(torch.tensor([seq])) + m.user_id(torch.tensor([uid])) + m.item_id(torch.tensor([iid]))
    assert torch.allclose(x[:, :n_real], want)
    assert tokens.shape[1] == 5 * T


def test_pretraining_masks_random_positions_and_uses_training_items_only(split):
    m = build_model("genrec", SMALL, split)
    users, hist, targets = m._pretrain_samples(split, np.random.default_rng(0))
    assert (hist == m.mask_item).sum(1).tolist() == [1] * len(users)
    positions = {int(np.flatnonzero(h == m.mask_item)[0] - np.flatnonzero(h)[0]) for h in hist}
    assert len(positions) > 3  # not only the last item
    for u, t in zip(users, targets):
        assert t in split.train.of(u)  # the last two items (valid/test targets) are never used


def test_finetuning_appends_mask_after_a_training_prefix(split):
    m = build_model("genrec", SMALL, split)
    users, hist, targets = m._finetune_samples(split)
    assert (hist[:, -1] == m.mask_item).all()
    u = users[0]
    seq = split.train.of(u)
    ctx = hist[0, :-1][hist[0, :-1] > 0]
    assert list(ctx) + [targets[0]] == list(seq[:len(ctx) + 1])


def test_scores_are_exact_code_log_probabilities(split):
    torch.manual_seed(0)
    m = build_model("genrec", SMALL, split).eval()
    users = torch.arange(3)
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-4:] for u in range(3)]))
    with torch.no_grad():
        s = m.score(users, seqs)
        assert s[:, 0].eq(float("-inf")).all()
        mass = s[:, 1:].exp().sum(1)  # probability of generating some catalog item
        assert torch.isfinite(s[:, 1:]).all() and (mass > 0).all() and (mass <= 1 + 1e-5).all()
        # reference twin: teacher-forced log-probability of item 7's code
        enc, mask = m.encode(users, m._with_mask(seqs))
        code = m.codes[7].expand(3, -1)
        logits = m.decode_logits(torch.cat([torch.full((3, 1), BEG), code], 1)[:, :-1], enc, mask)
        ref = torch.log_softmax(logits, -1).gather(2, code.unsqueeze(-1)).sum((1, 2))
    assert torch.allclose(s[:, 7], ref, atol=1e-5)


def test_constrained_beam_search_agrees_with_exact_scoring(split, trained):
    users = torch.arange(10)
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-8:] for u in range(10)]))
    res = beam_search(trained, users, seqs, k=5, beam=20)
    with torch.no_grad():
        exact = torch.topk(trained.score(users, seqs), 5, dim=1).indices.numpy()
    assert np.array_equal(res.items, exact)
    assert res.invalid == 0 and (res.items > 0).all()


def test_beam_search_can_exclude_seen_items(split, trained):
    users = torch.arange(10)
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-8:] for u in range(10)]))
    seen = [split.train.of(u) for u in range(10)]
    res = beam_search(trained, users, seqs, k=5, beam=10, seen=seen)
    for u in range(10):
        assert not set(res.items[u]) & set(seen[u].tolist())
        assert len(set(res.items[u])) == 5


def test_unconstrained_decoding_reports_invalid_generations(split):
    torch.manual_seed(1)
    m = build_model("genrec", SMALL, split).eval()  # untrained: plenty of invalid codes
    users = torch.arange(4)
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-4:] for u in range(4)]))
    res = beam_search(m, users, seqs, k=20, beam=20, constrained=False)
    assert res.generated == 80 and 0 < res.invalid <= 80
    assert set(np.unique(res.items)) <= set(range(split.n_items + 1))
    assert res.invalid_rate == res.invalid / 80


def test_initialises_from_a_local_bart_checkpoint(split, tmp_path):
    from transformers import BartConfig, BartModel

    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=50, d_model=24, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=128)
    saved = BartModel(cfg)
    saved.save_pretrained(tmp_path / "tiny-bart")
    m = build_model("genrec", {"init_from": str(tmp_path / "tiny-bart"), "max_items": 8}, split)
    assert m.bart.config.d_model == 24 and m.bart.shared.weight.shape[0] == m.tok.vocab_size
    assert torch.equal(m.bart.encoder.layers[0].fc1.weight, saved.encoder.layers[0].fc1.weight)
    fit(m, split, TrainConfig(epochs=1, batch_size=64, progress=False), EvalConfig(ks=(5, 10)), max_len=8)


def test_init_from_a_directory_without_a_model_is_a_clear_error(split, tmp_path):
    from genrecsys.errors import GenrecsysError

    with pytest.raises(GenrecsysError, match="no config.json"):
        build_model("genrec", {"init_from": str(tmp_path)}, split)


def test_pretraining_epochs_run_first_without_validation(split):
    m = build_model("genrec", SMALL, split)
    res = fit(m, split, TrainConfig(epochs=2, pretrain_epochs=2, batch_size=64, progress=False), EvalConfig(ks=(5, 10)),
              max_len=8)
    phases = [r["phase"] for r in res.history]
    assert phases == ["pretrain", "pretrain", "finetune", "finetune"] and res.pretrain_epochs == 2
    assert "valid" not in res.history[0] and "valid" in res.history[2]


def test_cli_trains_genrec_with_pretraining_and_recommends(block_dataset_dir, tmp_path, capsys):
    from genrecsys.cli.main import main

    out = tmp_path / "run"
    assert main(["train", "--model", "genrec", "--dataset", str(block_dataset_dir), "--pretrain-epochs", "1",
                 "--epochs", "1", "--param", "d_model=32", "--param", "ffn_dim=64", "--no-progress",
                 "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "ndcg@10" in metrics["test"]
    capsys.readouterr()
    assert main(["recommend", str(out), "--user", "u0", "-k", "5", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs[0]["items"]) == 5


def test_other_models_refuse_pretraining_epochs(split):
    from genrecsys.errors import GenrecsysError

    m = build_model("sasrec", {}, split)
    with pytest.raises(GenrecsysError, match="no pretraining objective"):
        fit(m, split, TrainConfig(epochs=1, pretrain_epochs=1, progress=False), EvalConfig(), max_len=8)


def test_popularity_numbered_codes_rank_and_decode_consistently(split):
    torch.manual_seed(0)
    m = build_model("genrec", {**SMALL, "id_order": "popularity"}, split).eval()
    counts = np.bincount(split.train.items, minlength=split.n_items + 1)
    most_popular = int(np.argmax(counts[1:]) + 1)
    assert m.tok.decode_item(m.tok.codes[most_popular].tolist()) == most_popular
    assert m.tok.codes[most_popular].tolist() == m.tok._digits(1, m.tok.code_length)  # written as number 1
    users = torch.arange(4)
    seqs = torch.as_tensor(np.stack([split.train.of(u)[-4:] for u in range(4)]))
    res = beam_search(m, users, seqs, k=5, beam=25)
    with torch.no_grad():
        exact = torch.topk(m.score(users, seqs), 5, dim=1).indices.numpy()
    assert np.array_equal(res.items, exact)


def test_window_training_loss_is_the_mean_of_its_prefixes_trained_separately(split):
    """training=windows: block-causal attention in BART's own layers, so one window of L
    targets gives the loss of L separate (prefix -> next item) samples."""
    torch.manual_seed(1)
    m = build_model("genrec", {**SMALL, "training": "windows", "max_items": 8}, split).eval()
    whole, parts = window_loss_and_prefix_losses(m)
    assert torch.allclose(whole, parts, atol=1e-5)


def test_window_training_learns_the_cycles_and_refuses_cloze_pretraining(split):
    from genrecsys.errors import GenrecsysError
    from genrecsys.train.loop import evaluate

    torch.manual_seed(0)
    m = build_model("genrec", {"training": "windows", "max_items": 8}, split)
    fit(m, split, TrainConfig(epochs=20, lr=3e-3, batch_size=32, progress=False, seed=0), EvalConfig(ks=(5, 10)), max_len=8)
    assert evaluate(m, split, "test", EvalConfig(ks=(5, 10)), max_len=8).metrics["hit@5"] >= 0.8
    with pytest.raises(GenrecsysError, match="pretraining"):
        m.set_phase("pretrain")
