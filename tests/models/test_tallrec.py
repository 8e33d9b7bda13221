"""tallrec: the LLM tuned to answer yes/no about a candidate (tiny random Llama as the LLM)."""
import numpy as np
import pytest
import torch

from genrecsys.config import DataConfig, ExperimentConfig, TrainConfig
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.errors import GenrecsysError
from genrecsys.experiment import build_model, load_split, run_experiment

ANSWERS = ["item", "group"]  # two words of the test vocabulary stand in for Yes / No


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


@pytest.fixture(scope="module")
def params(tiny_causal_lm_dir):
    return {"llm": str(tiny_causal_lm_dir), "answers": ANSWERS, "recent": 4}


def test_k_examples_are_half_liked_half_never_seen_and_fixed_by_the_seed(split, params):
    m = build_model("tallrec", {**params, "examples": 16}, split)
    hist, cands, labels = m._examples
    assert len(cands) == 16 and labels.sum() == 8 and hist.shape == (16, 4)
    pos_hist, neg_hist = hist[:8], hist[8:]
    assert np.array_equal(pos_hist, neg_hist)  # each negative is asked on its positive's history
    n_tr = np.diff(split.train.indptr)
    for h, item, label in zip(hist, cands, labels):
        owners = [u for u in range(split.n_users) if n_tr[u] > 1 and
                  any(np.array_equal(split.train.of(u)[max(0, p - 4):p], h[h > 0]) and split.train.of(u)[p] == item
                      for p in range(1, n_tr[u]))]
        if label:
            assert owners  # a real next item after that history
    again = build_model("tallrec", {**params, "examples": 16}, split)._examples
    assert all(np.array_equal(a, b) for a, b in zip(m._examples, again))
    other = build_model("tallrec", {**params, "examples": 16, "seed": 1}, split)._examples
    assert not np.array_equal(m._examples[1], other[1])
    every = build_model("tallrec", {**params, "examples": 0}, split)._examples
    assert len(every[1]) == 2 * int(np.maximum(n_tr - 1, 0).sum())


def test_negatives_are_items_the_user_never_had(split, params):
    m = build_model("tallrec", {**params, "examples": 0}, split)
    hist, cands, labels = m._examples
    n_tr = np.diff(split.train.indptr)
    owners = np.repeat(np.arange(split.n_users), np.maximum(n_tr - 1, 0))
    negs = cands[labels == 0]
    for u, item in zip(owners, negs):
        assert item not in set(split.train.of(int(u)).tolist())


def test_one_pass_over_a_users_candidates_equals_each_prompt_on_its_own(split, params):
    """The shared prefix with the candidates as chains of a tree gives the log-odds that
    the training path (one plain left-padded prompt per candidate) gives."""
    torch.manual_seed(0)
    m = build_model("tallrec", params, split).eval()
    seq = split.train.of(3)[-6:]
    items = [1, 5, 9, 17]
    with torch.no_grad():
        tree = m._log_odds(seq, items)
        for j, item in enumerate(items):
            ids = torch.as_tensor(m._prefix(seq) + m._chain(item))[None]
            h = m.decoder(input_ids=ids).last_hidden_state[0, -1]
            logits = h @ m.head[[m.yes, m.no]].T
            assert torch.allclose(tree[j], logits[0] - logits[1], atol=1e-4)


def test_full_ranking_reranks_the_retrievers_top_candidates_and_keeps_its_order_below(block_dataset_dir, params,
                                                                                    tmp_path):
    cfg = ExperimentConfig(model="bpr", data=DataConfig(dataset=str(block_dataset_dir)),
                           train=TrainConfig(epochs=5, progress=False, seed=0))
    run_experiment(cfg, tmp_path / "bpr")
    split = load_split(cfg)
    torch.manual_seed(0)
    m = build_model("tallrec", {**params, "retriever": str(tmp_path / "bpr"), "candidates": 5}, split).eval()
    users = torch.arange(3)
    seqs = torch.as_tensor(np.stack([np.pad(split.train.of(u)[-8:], (8 - len(split.train.of(u)[-8:]), 0))
                                     for u in range(3)]))
    with torch.no_grad():
        out = m.score(users, seqs)
        base = m._runtime["retriever"].score(users, seqs).float()
    for b in range(3):
        seen = set(split.train.of(b).tolist())
        unseen = [i for i in range(1, split.n_items + 1) if i not in seen]
        by_retriever = sorted(unseen, key=lambda i: -float(base[b, i]))
        top = by_retriever[:5]
        by_final = sorted(unseen, key=lambda i: -float(out[b, i]))
        assert set(by_final[:5]) == set(top)  # the LLM re-orders the retriever's top 5 only
        assert by_final[5:] == by_retriever[5:]  # the rest keep the retriever's order
        with torch.no_grad():
            llm = m._log_odds(seqs[b].numpy(), top)
        assert [top[j] for j in torch.argsort(llm, descending=True, stable=True).tolist()] == by_final[:5]


def test_bad_settings_fail_with_one_line(split, params):
    with pytest.raises(GenrecsysError, match="answers: expected 2 values"):
        build_model("tallrec", {**params, "answers": ["yes"]}, split)
    with pytest.raises(GenrecsysError, match="same first token"):
        build_model("tallrec", {**params, "answers": ["zzzz", "qqqq"]}, split)  # both unknown to the vocabulary
    with pytest.raises(GenrecsysError, match="finetune must be one of"):
        build_model("tallrec", {**params, "finetune": "prefix"}, split)


def test_the_frozen_llm_is_the_zero_shot_point_scored_without_training(split, params):
    from genrecsys.config import EvalConfig
    from genrecsys.train.loop import fit

    m = build_model("tallrec", {**params, "finetune": "frozen"}, split)
    assert not any(p.requires_grad for p in m.parameters()) and m.state_dict() == {}
    result = fit(m, split, TrainConfig(epochs=5, progress=False), EvalConfig(ks=(10,)))
    assert result.epochs_run == 1 and 0.0 <= result.best_valid["auc"] <= 1.0
