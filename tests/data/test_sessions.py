from __future__ import annotations

import numpy as np
import pytest
from newsfixtures import MIND

from genrecsys.data.impressions import impression_split
from genrecsys.data.mind import load_mind
from genrecsys.data.sessions import session_batches
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles


def _epoch(split, **kw):
    batches = list(session_batches(split, 7, np.random.default_rng(0), **kw))
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}


@pytest.mark.parametrize("size", [1, 3, 5])
def test_every_training_click_after_the_first_is_a_target_exactly_once(size):
    split = leave_one_out(block_cycles(n_users=6, length=12))
    e = _epoch(split, session_size=size, max_history=4, n_neg=2)
    assert e["cands"].shape[1:] == (size, 3) and e["mask"].sum(1).max() <= size
    seen: dict = {}
    for u, cands, mask in zip(e["users"], e["cands"], e["mask"]):
        for t in cands[mask, 0].tolist():
            seen[(int(u), t)] = seen.get((int(u), t), 0) + 1
    expected: dict = {}
    for u in range(split.n_users):
        for t in split.train.of(u)[1:].tolist():
            expected[(u, t)] = expected.get((u, t), 0) + 1
    assert seen == expected


def test_history_is_the_last_items_before_the_session():
    split = leave_one_out(block_cycles(n_users=4, length=12))
    e = _epoch(split, session_size=3, max_history=4, n_neg=1)
    for u, hist, cands, mask in zip(e["users"], e["hist"], e["cands"], e["mask"]):
        seq = split.train.of(u)
        first = cands[0, 0]
        # block cycles visit each item once per user within 10 steps: the first target's position is unique
        p = int(np.flatnonzero(seq == first)[0])
        want = seq[max(0, p - 4):p]
        assert hist[4 - len(want):].tolist() == want.tolist() and (hist[:4 - len(want)] == 0).all()
        assert cands[mask, 0].tolist() == seq[p:p + mask.sum()].tolist()


def test_negatives_avoid_the_users_training_items():
    split = leave_one_out(block_cycles(n_users=8, items_per_group=30, length=12))
    e = _epoch(split, session_size=2, n_neg=4)
    for u, cands, mask in zip(e["users"], e["cands"], e["mask"]):
        negs = cands[mask, 1:].ravel()
        assert (negs > 0).all() and not set(negs.tolist()) & set(split.train.of(u).tolist())
    assert (e["cands"][~e["mask"]] == 0).all()  # padded targets carry no candidates


def test_logged_impressions_are_sessions_with_their_own_negatives():
    split = impression_split(load_mind(MIND))
    imp = split.meta["train_impressions"]
    e = _epoch(split, session_size=5, n_neg=3)
    assert e["mask"].sum() == int((imp.labels == 1).sum())  # every training click once
    shown = {}
    for i in range(len(imp)):
        a, b = imp.indptr[i], imp.indptr[i + 1]
        key = (int(imp.users[i]), tuple(sorted(imp.items[a:b][imp.labels[a:b] == 1].tolist())))
        shown[key] = set(imp.items[a:b][imp.labels[a:b] == 0].tolist())
    for u, hist, cands, mask in zip(e["users"], e["hist"], e["cands"], e["mask"]):
        negs = shown[(int(u), tuple(sorted(cands[mask, 0].tolist())))]
        assert set(cands[mask, 1:].ravel().tolist()) <= negs
