"""llmsid: a causal LM taught semantic IDs (tiny random Llama standing in for SmolLM2)."""
import numpy as np
import pytest
import torch

from genrecsys.config import EvalConfig, TrainConfig
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.errors import GenrecsysError
from genrecsys.experiment import build_model
from genrecsys.generative.beam import beam_search
from genrecsys.train.loop import fit


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


@pytest.fixture(scope="module")
def codes_dir(split, tmp_path_factory):
    from newsfixtures import make_toy_semantic_ids

    return make_toy_semantic_ids(split, tmp_path_factory.mktemp("sid") / "codes")


@pytest.fixture(scope="module")
def params(tiny_causal_lm_dir, codes_dir):
    return {"llm": str(tiny_causal_lm_dir), "codes": codes_dir, "max_len": 8}


@pytest.fixture(scope="module")
def trained(split, params):
    torch.manual_seed(0)
    m = build_model("llmsid", params, split)
    fit(m, split, TrainConfig(epochs=15, lr=0.01, batch_size=32, progress=False, seed=0), EvalConfig(ks=(5, 10)), max_len=8)
    return m.eval()


def _seqs(split, users):
    return torch.as_tensor(np.stack([np.pad(split.train.of(u)[-8:], (8 - len(split.train.of(u)[-8:]), 0))
                                     for u in users]))


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_one_window_loss_is_the_mean_of_its_prefixes_trained_separately(split, params, finetune):
    """Causal attention: a window of L targets costs one pass and gives the loss of its L
    prefixes (history up to p -> item p+1), each right-aligned in a window of its own."""
    torch.manual_seed(1)
    m = build_model("llmsid", {**params, "finetune": finetune}, split).eval()
    seqs = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    targets = torch.tensor([[0, 0, 4, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        whole = m.loss({"seqs": seqs, "targets": targets})
        parts = []
        for p in range(2, 8):
            s, t = torch.zeros_like(seqs), torch.zeros_like(targets)
            s[0, 8 - (p + 1):] = seqs[0, :p + 1]
            t[0, -1] = targets[0, p]
            parts.append(m.loss({"seqs": s, "targets": t}))
    assert torch.allclose(whole, torch.stack(parts).mean(), atol=1e-5)


@pytest.fixture(scope="module")
def titled(split, params):
    """Untrained, with each history item's code followed by up to 9 title tokens (ragged:
    8-token titles leave masked padding inside the history and at its end)."""
    torch.manual_seed(4)
    m = build_model("llmsid", {**params, "titles": 9}, split).eval()
    assert m.title_len[1:].min() < 9 == m.title_len[1:].max()
    return m


def test_tree_scores_equal_item_by_item_teacher_forcing(split, trained):
    """The trie laid out as one tree after the history (4-D mask, positions continuing the
    history's) gives what a plain causal pass over history + each item's code gives."""
    _tree_equals_teacher_forcing(split, trained)


def test_tree_scores_with_titles_in_the_history_equal_teacher_forcing(split, titled):
    _tree_equals_teacher_forcing(split, titled)


def test_a_titled_windows_loss_equals_the_unpadded_prompt_teacher_forced(split, titled):
    """With titles, the state before a target's first code token is the last real token
    of the previous item's title, not its slot's padding."""
    m, T = titled, titled.tok.code_length
    words = m.decoder.get_input_embeddings()
    short = int(torch.nonzero(m.title_len[1:] < 9)[0]) + 1
    seqs = torch.tensor([[0, 0, 0, 0, 2, short, 7, short]])
    with torch.no_grad():
        for target in (9, short):
            t = torch.zeros_like(seqs)
            t[0, -1] = target
            got = m.loss({"seqs": seqs, "targets": t})
            ids = [*m.prompt_ids.tolist()]
            x = [words(m.prompt_ids)]
            for item in seqs[0][seqs[0] > 0].tolist():
                n = int(m.title_len[item])
                x += [m.code_emb(m.codes[item]), words(m.title_ids[item, :n])]
                ids += [-1] * (T + n)
            x.append(m.code_emb(m.codes[target][:-1]))
            h = m.decoder(inputs_embeds=torch.cat(x)[None]).last_hidden_state[0]
            logits = m._code_logits(h[-T:]).masked_fill(~m.level_tokens, float("-inf"))
            want = torch.nn.functional.cross_entropy(logits, m.codes[target])
            assert torch.allclose(got, want, atol=1e-5)


def _tree_equals_teacher_forcing(split, m):
    seqs = _seqs(split, [0, 5])
    T = m.tok.code_length
    assert T == 3 and len(m._score_tree[0]) > 3  # a tree of nodes, not one level
    items = torch.arange(1, m.n_items + 1)
    with torch.no_grad():
        scores = m.score(torch.tensor([0, 5]), seqs)
        for row in range(2):
            hist = seqs[row:row + 1].expand(len(items), -1)
            x, keep, pos = m._history(hist, m.codes[items][:, :-1])
            h = m.decoder(inputs_embeds=x, attention_mask=keep.long(), position_ids=pos).last_hidden_state
            # states before each level's token: the history's last real token (a short title's
            # padding may follow it), then the code tokens fed
            last = keep.shape[1] - T - int(keep[0, :1 - T].flip(0).long().argmax())
            h = torch.cat([h[:, last:last + 1], h[:, 1 - T:]], 1)  # (I, T, H)
            logits = m._code_logits(h)
            ref = torch.zeros(len(items))
            for level in range(T):
                prefixes = [tuple(c) for c in m.codes[items, :level].tolist()]
                allowed = torch.as_tensor(m.trie.allowed(prefixes, logits.shape[-1]))
                lp = torch.log_softmax(logits[:, level].masked_fill(~allowed, float("-inf")), -1)
                ref += lp[torch.arange(len(items)), m.codes[items, level]]
            assert torch.allclose(scores[row, 1:], ref, atol=1e-4)


def test_exact_scores_are_a_distribution_over_the_catalog_and_beam_search_agrees(split, trained):
    users = torch.arange(4)
    seqs = _seqs(split, range(4))
    with torch.no_grad():
        scores = trained.score(users, seqs)
    assert torch.allclose(scores[:, 1:].exp().sum(1), torch.ones(4), atol=1e-4)
    result = beam_search(trained, users, seqs, k=5, beam=split.n_items)  # an unbounded beam is exact
    assert result.invalid == 0
    assert np.array_equal(result.items, torch.topk(scores, 5).indices.numpy())
    assert np.allclose(result.scores, torch.topk(scores, 5).values.numpy(), atol=1e-4)


def test_a_narrow_constrained_beam_returns_only_unseen_catalog_items(split, trained):
    seqs = _seqs(split, range(6))
    seen = [split.train.of(u) for u in range(6)]
    result = beam_search(trained, torch.arange(6), seqs, k=3, beam=4, seen=seen)
    for row, items in enumerate(result.items):
        assert (items > 0).all() and not set(items) & set(seen[row].tolist())


def test_checkpoints_hold_the_trained_weights_only_and_the_base_stays_as_loaded(split, params, trained,
                                                                              tiny_causal_lm_dir):
    from genrecsys.models.llmrec import load_causal_lm

    keys = set(trained.state_dict())
    assert keys and all("lora_" in k or k.startswith("code_emb.") for k in keys)
    base = load_causal_lm(str(tiny_causal_lm_dir))[0].get_decoder()
    for name, w in base.state_dict().items():  # LoRA trained beside the base weights, not in them
        assert torch.equal(trained.decoder.state_dict()[name.replace(".weight", ".base_layer.weight")
                                                        if name.replace(".weight", ".base_layer.weight")
                                                        in trained.decoder.state_dict() else name], w)
    frozen = build_model("llmsid", {**params, "finetune": "frozen"}, split)
    assert set(frozen.state_dict()) == {"code_emb.weight"}
    full = build_model("llmsid", {**params, "finetune": "full"}, split)
    assert len(full.state_dict()) > len(base.state_dict())
    with pytest.raises(RuntimeError, match="same llm, layers"):
        frozen.load_state_dict(trained.state_dict())


def test_bad_settings_fail_with_one_line(split, params, tmp_path):
    with pytest.raises(GenrecsysError, match="finetune must be one of"):
        build_model("llmsid", {**params, "finetune": "qlora"}, split)
    with pytest.raises(GenrecsysError, match="not a Hugging Face model directory"):
        build_model("llmsid", {**params, "llm": str(tmp_path)}, split)
    with pytest.raises(GenrecsysError, match="layers=9 but the LM has 2 blocks"):
        build_model("llmsid", {**params, "layers": 9}, split)
    with pytest.raises(GenrecsysError, match=r"dropout must be in \[0, 1\)"):
        build_model("llmsid", {**params, "dropout": 1.0}, split)


def _unpadded_states(m, rows, item):
    """One alignment row of `item` with its padding cut off, through the decoder alone."""
    ids, code, keep = rows[0][item], rows[1][item].bool(), rows[2][item].bool()
    ids, code = ids[keep], code[keep]
    words = m.decoder.get_input_embeddings()
    x = torch.stack([m.code_emb(t) if c else words(t) for t, c in zip(ids, code)])[None]
    return m.decoder(inputs_embeds=x).last_hidden_state[0], keep


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_alignment_losses_equal_the_unpadded_prompts_teacher_forced(split, params, finetune):
    """LC-Rec's title -> code and code -> title rows, padded into one table, score exactly as
    each item's prompt alone: left padding, masks and positions change nothing."""
    torch.manual_seed(2)
    m = build_model("llmsid", {**params, "finetune": finetune, "align": 0.5}, split).eval()
    items = torch.tensor([3, 11, 20, 3])
    T = m.tok.code_length
    with torch.no_grad():
        got = m.align_losses(items)
        for n, item in enumerate(items.tolist()):
            h, _ = _unpadded_states(m, m.t2c_rows, item)
            logits = m._code_logits(h[-T - 1:-1]).masked_fill(~m.level_tokens, float("-inf"))
            want = torch.nn.functional.cross_entropy(logits, m.codes[item])
            assert torch.allclose(got["title2code"][n], want, atol=1e-5)
            h, keep = _unpadded_states(m, m.c2t_rows, item)
            target, ids = m.c2t_rows[3][item][keep], m.c2t_rows[0][item][keep]
            on = target >= 0
            assert on.sum() >= 1  # every item has a title (or its raw id) to write
            # each target is the token that follows its state, up to the row's last token
            assert torch.equal(target[:-1][on[:-1]], ids[1:][on[:-1]]) and on[-2] and not on[-1]
            logits = h[on] @ m.decoder.get_input_embeddings().weight.T
            want = torch.nn.functional.cross_entropy(logits, target[on])
            assert torch.allclose(got["code2title"][n], want, atol=1e-5)
    assert torch.equal(got["title2code"][0], got["title2code"][3])


def test_alignment_adds_its_weighted_loss_and_training_lowers_it(split, params):
    torch.manual_seed(3)
    m = build_model("llmsid", {**params, "align": 0.5, "align_items": 8}, split)
    plain = build_model("llmsid", params, split)
    assert not hasattr(plain, "t2c_rows")  # off by default: nothing built, nothing added
    batch = next(iter(m.batches(split, 4, np.random.default_rng(0))))
    assert batch["align"].shape == (8,) and int(batch["align"].min()) >= 1
    with torch.no_grad():
        tasks = m.align_losses(batch["align"])
        base = m.loss({k: v for k, v in batch.items() if k != "align"})
        assert torch.allclose(m.loss(batch), base + 0.5 * (tasks["title2code"].mean() + tasks["code2title"].mean()) / 2,
                              atol=1e-5)
    every = torch.arange(1, split.n_items + 1)
    with torch.no_grad():
        before = {k: float(v.mean()) for k, v in m.align_losses(every).items()}
    fit(m, split, TrainConfig(epochs=4, lr=0.01, batch_size=32, progress=False, seed=0), EvalConfig(ks=(5, 10)), max_len=8)
    m.eval()
    with torch.no_grad():
        after = {k: float(v.mean()) for k, v in m.align_losses(every).items()}
    assert after["title2code"] < before["title2code"] and after["code2title"] < before["code2title"]
    with pytest.raises(GenrecsysError, match="align_tasks from title2code, code2title"):
        build_model("llmsid", {**params, "align": 1.0, "align_tasks": ["title2text"]}, split)


def test_input_dropout_acts_in_training_only_and_leaves_the_weights_and_scores_alone(split, params):
    torch.manual_seed(5)
    plain = build_model("llmsid", params, split)
    dropped = build_model("llmsid", {**params, "dropout": 0.3}, split)
    dropped.load_state_dict(plain.state_dict())  # the same weights: dropout adds no parameter
    batch = {"seqs": torch.tensor([[0, 3, 4, 5, 6, 7, 8, 9]] * 4), "targets": torch.tensor([[0, 4, 5, 6, 7, 8, 9, 10]] * 4)}
    with torch.no_grad():
        plain.eval(), dropped.eval()
        assert torch.equal(plain.loss(batch), dropped.loss(batch))
        users = np.array([1, 2, 3])
        seqs = _seqs(split, users)
        assert torch.equal(plain.score(torch.as_tensor(users), seqs), dropped.score(torch.as_tensor(users), seqs))
        dropped.train()
        noisy = [dropped.loss(batch) for _ in range(2)]
        plain.train()
        assert torch.equal(plain.loss(batch), plain.loss(batch))  # no other randomness in a training pass
    assert not torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], plain.loss(batch).detach())
