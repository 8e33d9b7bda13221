"""Synthetic (LLM-generated) items reach the news / CTR models' training histories, and
nowhere else: not as candidates, negatives, targets, impressions or evaluation input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from augmentdata import llm, news_dir, scripted  # noqa: F401  (fixtures)
from newsfixtures import TOKENIZER, news_params

from genrecsys.augment import augment
from genrecsys.config import EvalConfig, TrainConfig
from genrecsys.data.augmented import synthetic_history
from genrecsys.data.impressions import construct_impressions
from genrecsys.data.itemtext import item_inputs
from genrecsys.data.load import load_dataset
from genrecsys.data.schema import Dataset
from genrecsys.data.sessions import session_batches
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.experiment import build_model
from genrecsys.train.loop import fit

NEW = ["u0", "u1", "u2"]  # users that get synthetic items


def _synthetic(users=NEW, per_user: int = 2) -> pd.DataFrame:
    rows = [{"item": f"syn-r1-{u}-{k}", "user": u, "title": f"Invented story {k} for group {int(u[1:]) % 2}",
             "abstract": "An LLM wrote it.", "category": f"g{int(u[1:]) % 2}", "round": 1, "task": "generate"}
            for u in users for k in range(1, per_user + 1)]
    return pd.DataFrame(rows)


def _split(synthetic: pd.DataFrame | None):
    ds = block_cycles(n_users=12, length=8)
    return leave_one_out(Dataset(ds.name, ds.interactions, ds.items, ds.users, synthetic=synthetic))


def _epoch(split, seed: int = 0, **kw) -> list[dict[str, torch.Tensor]]:
    return list(session_batches(split, 4, np.random.default_rng(seed), **{"session_size": 2, "max_history": 10, **kw}))


def _cat(batches, key):
    return torch.cat([b[key] for b in batches]).numpy()


def test_synthetic_items_are_extra_item_rows_after_the_real_items():
    plain, augmented = _split(None), _split(_synthetic())
    assert augmented.n_items == plain.n_items and list(augmented.item_ids) == list(plain.item_ids)
    a = item_inputs(augmented, cache_dir=None, tokenizer=_tok())
    assert a.tokens.shape[0] == augmented.n_items + 1 + 6
    # real titles keep their word-piece ids: synthetic-only pieces are numbered after the real ones
    title = a.segments["title"]
    np.testing.assert_array_equal(a.tokens[:augmented.n_items + 1, title],
                                  item_inputs(plain, tokenizer=_tok()).tokens[:, title])
    assert (a.tokens[augmented.n_items + 1:] > 0).any(1).all()  # each synthetic row has its own tokens
    # a synthetic item of group 0 shares the category token of the real group-0 items
    cat = a.segments["category"]
    g0_real = a.tokens[list(augmented.item_ids).index("i1"), cat][0]
    assert a.tokens[augmented.n_items + 1, cat][0] == g0_real
    assert a.texts[augmented.n_items + 1] == "Invented story 1 for group 0"


def test_synthetic_items_come_first_in_training_histories_and_never_as_candidates():
    split = _split(_synthetic())
    n = split.n_items
    syn = synthetic_history(split)
    batches = _epoch(split)
    users, hist, cands, mask = (_cat(batches, k) for k in ("users", "hist", "cands", "mask"))
    assert (cands <= n).all() and (cands[mask] > 0).all()  # targets and negatives: real items only
    seen_syn = set()
    for u, h in zip(users, hist):
        h = h[h > 0]
        is_syn = h > n
        own = set(syn.of(u).tolist())
        assert set(h[is_syn].tolist()) <= own  # only the user's own synthetic items
        if is_syn.any():  # synthetic first, then the real clicks
            assert list(is_syn) == sorted(is_syn, reverse=True)
            assert list(h[is_syn]) == list(syn.of(u))  # all of them (they fit), in generation order
        seen_syn |= set(h[is_syn].tolist())
    assert seen_syn == set(range(n + 1, n + 7))
    # a new user's first click becomes a target, predicted from the synthetic items alone
    u0 = split.user_index("u0")
    first = split.train.of(u0)[0]
    rows = np.flatnonzero((users == u0) & (cands[:, 0, 0] == first))
    assert len(rows) and all(set(hist[r][hist[r] > 0].tolist()) == set(syn.of(u0).tolist()) for r in rows)


def test_real_clicks_stay_the_most_recent_within_max_history():
    split = _split(_synthetic(per_user=3))
    n = split.n_items
    hist = _cat(_epoch(split, max_history=4), "hist")
    for h in hist:
        real = h[(h > 0) & (h <= n)]
        if len(real):  # the newest column is a real click; synthetic items only fill what is left
            assert h[-1] == real[-1]
        assert (h > 0).sum() <= 4


def test_evaluation_impressions_and_histories_stay_real():
    split = _split(_synthetic())
    imp = construct_impressions(split, "test", n_negatives=5, seed=0)
    assert (imp.items <= split.n_items).all()
    assert (split.history("test").items <= split.n_items).all()


def test_batches_and_inputs_are_bit_identical_without_synthetic_items():
    plain = _split(None)
    # an empty synthetic table, and synthetic items of a user the split does not have
    for other in (_split(_synthetic().iloc[:0]), _split(_synthetic(users=["u99"]))):
        for seed in (0, 1):
            a, b = _epoch(plain, seed), _epoch(other, seed)
            assert len(a) == len(b)
            for x, y in zip(a, b):
                assert all(torch.equal(x[k], y[k]) for k in x)
    empty = _split(_synthetic().iloc[:0])
    assert synthetic_history(empty) is None
    np.testing.assert_array_equal(item_inputs(plain, tokenizer=_tok()).tokens,
                                  item_inputs(empty, tokenizer=_tok()).tokens)


@pytest.mark.parametrize("name", ["nrms", "bst"])
def test_a_news_model_trains_on_a_split_with_synthetic_items(name):
    split = _split(_synthetic())
    torch.manual_seed(0)
    model = build_model(name, news_params(name, None), split)
    assert model.item_table().shape[0] == split.n_items + 1  # scoring covers real items only
    fit(model, split, TrainConfig(progress=False, epochs=2, batch_size=8, seed=0, patience=100),
        EvalConfig(protocol="impressions"), max_len=8)
    scores = model.score(torch.tensor([0, 1]), torch.tensor([[0, 1, 2], [3, 4, 5]]))
    assert scores.shape == (2, split.n_items + 1) and torch.isfinite(scores).all()


def test_a_generated_variant_loads_with_its_synthetic_items_and_trains(news_dir, llm, tmp_path):
    variant = augment("generate", str(news_dir), tmp_path / "ng", llm)
    ds = load_dataset(str(variant))
    assert ds.synthetic is not None and set(ds.synthetic["user"]) == {"alice", "bob"}
    split = leave_one_out(ds)
    syn = synthetic_history(split)
    assert syn.lengths()[split.user_index("alice")] == 2 and syn.lengths()[split.user_index("dave")] == 0
    model = build_model("nrms", news_params("nrms", None), split)
    fit(model, split, TrainConfig(progress=False, epochs=1, batch_size=4, seed=0), EvalConfig(protocol="impressions"),
        max_len=8)


def _tok():
    from genrecsys.data.itemtext import load_tokenizer

    return load_tokenizer(str(TOKENIZER))
