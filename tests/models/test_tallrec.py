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


def _transitions(m):
    """Every (history items, liked item, unliked item) a model's training units ask about."""
    window, negatives = m._examples
    out = []
    for w, n in zip(window, negatives):
        for j in np.flatnonzero(n):
            out.append((tuple(int(i) for i in w[:j] if i > 0), int(w[j]), int(n[j])))
    return out


def test_k_examples_are_half_liked_half_never_seen_and_fixed_by_the_seed(split, params):
    m = build_model("tallrec", {**params, "examples": 16}, split)
    asked = _transitions(m)
    assert len(asked) == 8 and m._examples[0].shape == (8, 5)  # 8 units, each a Yes and a No: 16 answers
    for history, item, _ in asked:  # the evaluation's prompt: up to `recent` titles, then the candidate
        assert 1 <= len(history) <= 4
        assert any(tuple(split.train.of(u)[max(0, p - 4):p].tolist()) == history and split.train.of(u)[p] == item
                   for u in range(split.n_users) for p in range(1, len(split.train.of(u))))
    again = build_model("tallrec", {**params, "examples": 16}, split)._examples
    assert all(np.array_equal(a, b) for a, b in zip(m._examples, again))
    other = build_model("tallrec", {**params, "examples": 16, "seed": 1}, split)._examples
    assert not np.array_equal(m._examples[1], other[1])


def test_k_all_asks_every_transition_once_with_the_titles_before_it(split, params):
    """k = all packs `stride` consecutive transitions to a unit; each reads every title of the
    unit before it, at least `recent` of them once the user has that many."""
    n_tr = np.diff(split.train.indptr)
    for stride in (1, 3):
        m = build_model("tallrec", {**params, "examples": 0, "stride": stride}, split)
        assert m._examples[0].shape[1] == 4 + stride
        got = sorted((h, i) for h, i, _ in _transitions(m))
        want = []
        for u in range(split.n_users):
            seq = split.train.of(u).tolist()
            for s in range(1, len(seq), stride):
                for p in range(s, min(s + stride, len(seq))):
                    want.append((tuple(seq[max(0, s - 4):p]), seq[p]))
        assert got == sorted(want) and len(got) == int(np.maximum(n_tr - 1, 0).sum())
        assert min(len(h) for h, _ in got) == 1 and max(len(h) for h, _ in got) == 4 + stride - 1


def test_negatives_are_items_the_user_never_had(split, params):
    m = build_model("tallrec", {**params, "examples": 0}, split)
    window, negatives = m._examples
    assert (negatives > 0).sum() == int(np.maximum(np.diff(split.train.indptr) - 1, 0).sum())
    histories = {tuple(split.train.of(u).tolist()): u for u in range(split.n_users)}
    for w, n in zip(window, negatives):
        items = [int(i) for i in w if i > 0]
        owner = [u for seq, u in histories.items() if any(seq[k:k + len(items)] == tuple(items)
                                                          for k in range(len(seq) - len(items) + 1))]
        seen = set().union(*(set(split.train.of(u).tolist()) for u in owner))
        assert owner and not (set(n[n > 0].tolist()) & seen)


def test_a_packed_training_pass_is_the_mean_of_each_prompt_on_its_own(split, params):
    """One pass over a unit (its titles shared, each candidate a chain cut to its transition)
    gives the loss that each transition's own plain prompt gives, averaged over answers."""
    torch.manual_seed(0)
    m = build_model("tallrec", {**params, "examples": 0, "stride": 3}, split).eval()
    window, negatives = m._examples
    rows = np.argsort(-(negatives > 0).sum(1), kind="stable")[:3]  # units of different sizes, batched together
    batch = {"window": torch.as_tensor(window[rows]), "negatives": torch.as_tensor(negatives[rows])}
    with torch.no_grad():
        packed = m.loss(batch)
        losses = []
        for w, n in zip(window[rows], negatives[rows]):
            for j in np.flatnonzero(n):
                history = list(m.intro_ids)
                for i in w[:j]:
                    history += m.title_ids[int(i)] if i > 0 else []
                for item, answer in ((int(w[j]), m.yes), (int(n[j]), m.no)):
                    ids = torch.as_tensor(history + m._branch(item))[None]
                    h = m.decoder(input_ids=ids).last_hidden_state[0, -1]
                    losses.append(torch.nn.functional.cross_entropy(h @ m.head.T, torch.tensor(answer)))
    assert len(losses) > 6
    assert torch.allclose(packed, torch.stack(losses).mean(), atol=1e-5)


def test_one_pass_over_a_users_candidates_equals_each_prompt_on_its_own(split, params):
    """The shared prefix with the candidates as chains of a tree gives the log-odds that
    one plain prompt per candidate gives."""
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
    with pytest.raises(GenrecsysError, match="stride >= 1"):
        build_model("tallrec", {**params, "examples": 0, "stride": 0}, split)


def test_the_frozen_llm_is_the_zero_shot_point_scored_without_training(split, params):
    from genrecsys.config import EvalConfig
    from genrecsys.train.loop import fit

    m = build_model("tallrec", {**params, "finetune": "frozen"}, split)
    assert not any(p.requires_grad for p in m.parameters()) and m.state_dict() == {}
    result = fit(m, split, TrainConfig(epochs=5, progress=False), EvalConfig(ks=(10,)))
    assert result.epochs_run == 1 and 0.0 <= result.best_valid["auc"] <= 1.0
