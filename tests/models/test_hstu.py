"""HSTU specifics: the vectorised pointwise attention agrees with a plain loop, the
(user, item) time lookup, the bias buckets, causality and config checks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from genrecsys.data.schema import Dataset
from genrecsys.data.splits import leave_one_out
from genrecsys.data.synthetic import block_cycles
from genrecsys.errors import GenrecsysError
from genrecsys.models.hstu import (
    HSTU,
    HSTUConfig,
    InteractionTimes,
    pointwise_attention,
    position_buckets,
    time_buckets,
    visible_keys,
)
from genrecsys.data.batches import sequence_windows


@pytest.fixture(scope="module")
def split():
    return leave_one_out(block_cycles())


def _model(split, **over):
    torch.manual_seed(0)
    return HSTU(split, HSTUConfig(**over)).eval()


def _histories(split, users, length):
    return torch.as_tensor(np.stack([split.train.of(u)[-length:] for u in users]))


def test_pointwise_attention_matches_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    B, H, L, dk, dv, n = 3, 2, 5, 4, 3, 7
    q, k = torch.randn(B, H, L, dk, generator=g), torch.randn(B, H, L, dk, generator=g)
    v, rab = torch.randn(B, H, L, dv, generator=g), torch.randn(B, L, L, generator=g)
    seqs = torch.tensor([[0, 0, 3, 1, 2], [4, 4, 1, 2, 9], [0, 0, 0, 0, 6]])
    fast = pointwise_attention(q, k, v, rab, visible_keys(seqs), n)
    slow = torch.zeros(B, H, L, dv)
    for b in range(B):
        for h in range(H):
            for i in range(L):
                for j in range(i + 1):  # causal: keys up to the query
                    if seqs[b, j] != 0:  # padding keys are skipped
                        w = F.silu(q[b, h, i] @ k[b, h, j] + rab[b, i, j]) / n
                        slow[b, h, i] += w * v[b, h, j]
    assert torch.allclose(fast, slow, atol=1e-6)


def test_time_lookup_returns_the_latest_timestamp_and_0_for_unknown_pairs():
    inter = pd.DataFrame({"user": ["a", "a", "a", "b", "b", "b", "a"],
                          "item": ["x", "y", "z", "y", "z", "w", "x"],
                          "timestamp": [100, 200, 300, 150, 250, 350, 400]})  # (a, x) seen twice
    split = leave_one_out(Dataset("tiny", inter))
    times = InteractionTimes(split)
    a, b = split.user_index("a"), split.user_index("b")
    item = {raw: i for i, raw in enumerate(split.item_ids)}
    users = torch.tensor([a, b])
    seqs = torch.tensor([[0, item["x"], item["y"], item["z"], item["w"]],
                         [item["x"], item["y"], item["z"], item["w"], 0]])
    assert times(users, seqs).tolist() == [[0, 400, 200, 300, 0], [0, 150, 250, 350, 0]]
    assert times(torch.tensor([99]), seqs[:1]).tolist() == [[0] * 5]  # a user outside the split


def test_time_buckets_grow_with_the_log_of_the_gap():
    gaps = torch.tensor([[0, 1, 2, 60, 3600, 86_400, 10**30 // 10**12]])  # seconds after t = 0
    buckets = time_buckets(gaps, n_buckets=40)[0, :, 0]  # |t_i - t_0|
    assert buckets.tolist() == [0, 0, 2, 13, 27, 37, 40]  # 10**18 s would be bucket 137: capped


def test_position_buckets_are_exact_near_and_shared_far():
    b = position_buckets(50, n_buckets=32, max_len=50)
    d = torch.arange(50)
    assert b[d, 0].tolist()[:16] == list(range(16))  # distances 0..15 exact
    assert b[49, 0] == 31 and torch.all(b[d, 0].diff() >= 0)  # monotone up to the last bucket
    assert torch.all(b[0, 1:] == 0)  # later keys (masked anyway) clamp to distance 0


def test_training_batches_carry_the_window_user(split):
    model = _model(split, max_len=8)
    batch = next(iter(model.batches(split, 1000, np.random.default_rng(0))))
    x, _, owners = sequence_windows(split.train, 8)
    expected = sorted(r + [u] for r, u in zip(x.tolist(), owners.tolist()))
    assert sorted(r + [u] for r, u in zip(batch["seqs"].tolist(), batch["users"].tolist())) == expected


def test_an_earlier_position_does_not_see_later_items(split):
    model = _model(split)
    users = torch.arange(3)
    seqs = _histories(split, range(3), 7)
    seqs[0, :2] = 0  # some padding too
    changed = seqs.clone()
    changed[:, 4] = changed[:, 4] % split.n_items + 1  # another item (and so another timestamp) at position 4
    with torch.no_grad():
        h, h2 = model.encode(seqs, users), model.encode(changed, users)
    assert torch.allclose(h[:, :4], h2[:, :4], atol=1e-6)
    assert not torch.allclose(h[:, 4:], h2[:, 4:])


def test_score_does_not_depend_on_the_padding_before_a_sequence(split):
    model = _model(split)
    users = torch.tensor([5])
    items = _histories(split, [5], 6)
    with torch.no_grad():
        short = model.score(users, items)
        for pad in (1, 10, 44):
            padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), items], dim=1)
            assert torch.allclose(model.score(users, padded), short, atol=1e-5)


def test_time_bias_reads_the_users_timestamps(split):
    model = _model(split)
    seqs = _histories(split, range(4), 7)
    with torch.no_grad():
        timed, untimed = model.encode(seqs, torch.arange(4)), model.encode(seqs, None)
    assert not torch.allclose(timed, untimed)


@pytest.mark.parametrize("over", [{"n_heads": 3}, {"dropout": 1.0}, {"n_time_buckets": 0}, {"max_len": 0}])
def test_a_bad_config_value_fails_with_one_line(over):
    with pytest.raises(GenrecsysError) as err:
        HSTUConfig(**over)
    msg = str(err.value)
    assert msg.startswith("hstu: ") and "\n" not in msg and next(iter(over)) in msg
