"""Ranking protocols on hand-built splits with fake, table-driven score functions: full
ranking (eval/ranking.py) and sampled negatives (eval/sampled.py), which must agree when
the catalog is smaller than the sample."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from genrecsys.data.schema import Dataset
from genrecsys.data.splits import SplitData, leave_one_out, ratio_split
from genrecsys.eval.ranking import evaluate_ranking
from genrecsys.eval.sampled import evaluate_sampled, sample_negatives

PAD_SCORE = 100.0  # the fake scorer loves the padding column; the evaluator must ignore it


def dataset(seqs: dict[str, str]) -> Dataset:
    """One interaction per letter, in order: {"u1": "abcd"} -> u1 saw a, b, c, d."""
    rows = [(u, item, t) for u, items in seqs.items() for t, item in enumerate(items)]
    return Dataset("toy", pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


def table_scores(split: SplitData, table: dict[str, dict[str, float]], calls: list | None = None):
    """Score function giving user u item i the score table[u][i] (0 when unlisted)."""
    scores = np.zeros((split.n_users, split.n_items + 1))
    item_index = {iid: i for i, iid in enumerate(split.item_ids)}
    for u, row in table.items():
        for item, s in row.items():
            scores[split.user_index(u), item_index[item]] = s
    scores[:, 0] = PAD_SCORE

    def fn(users: np.ndarray, seqs: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append((users.copy(), seqs.copy()))
        return scores[users]
    return fn


@pytest.fixture
def loo() -> SplitData:
    # u1: train a b, valid c, test d.  u2: train e, valid f, test a.  u3: too short, not evaluated.
    return leave_one_out(dataset({"u1": "abcd", "u2": "efa", "u3": "bc"}))


# Each user's seen items outscore the held-out ones, so masking decides every rank.
TABLE = {"u1": {"a": 9, "b": 8, "c": 7, "d": 6, "e": 1},
         "u2": {"e": 9, "f": 8, "a": 7, "b": 1, "c": 2, "d": 3}}


def by_user(split: SplitData, res, metric: str) -> dict[str, float]:
    return {split.user_ids[u]: float(v) for u, v in zip(res.users, res.per_user[metric])}


def test_only_users_with_a_target_are_evaluated(loo):
    res = evaluate_ranking(table_scores(loo, TABLE), loo, "valid", ks=(1,))
    assert sorted(loo.user_ids[res.users]) == ["u1", "u2"]
    assert res.protocol == "full"


def test_valid_masks_training_items(loo):
    res = evaluate_ranking(table_scores(loo, TABLE), loo, "valid", ks=(1, 5))
    # u1: a, b masked -> c first.  u2: e masked -> f first.
    assert by_user(loo, res, "hit@1") == {"u1": 1.0, "u2": 1.0}
    assert res["ndcg@5"] == 1.0


def test_test_masks_training_and_validation_items(loo):
    res = evaluate_ranking(table_scores(loo, TABLE), loo, "test", ks=(1, 5))
    # u1: a, b (train) and c (valid) masked -> d first; masking train only would rank d 2nd.
    assert by_user(loo, res, "hit@1") == {"u1": 1.0, "u2": 1.0}
    assert res["mrr@5"] == 1.0


def test_without_masking_seen_items_keep_their_ranks(loo):
    valid = evaluate_ranking(table_scores(loo, TABLE), loo, "valid", ks=(5,), mask_seen=False)
    test = evaluate_ranking(table_scores(loo, TABLE), loo, "test", ks=(5,), mask_seen=False)
    # valid: u1's c is 3rd (after a, b), u2's f 2nd (after e); test: u1's d 4th, u2's a 3rd.
    assert by_user(loo, valid, "mrr@5") == pytest.approx({"u1": 1 / 3, "u2": 1 / 2})
    assert by_user(loo, test, "ndcg@5") == pytest.approx({"u1": 1 / math.log2(5), "u2": 1 / math.log2(4)})


def test_padding_column_is_never_recommended(loo):
    # Were column 0 (score 100) eligible it would take rank 1 and every hit@1 would be 0.
    for mask in (True, False):
        res = evaluate_ranking(table_scores(loo, {"u1": {"c": 5}, "u2": {"f": 5}}), loo, "valid", ks=(1,),
                               mask_seen=mask)
        assert res["hit@1"] == 1.0


def test_score_fn_sees_left_padded_history_of_the_stage(loo):
    calls: list = []
    evaluate_ranking(table_scores(loo, TABLE, calls), loo, "test", ks=(1,), max_len=4)
    evaluate_ranking(table_scores(loo, TABLE, calls), loo, "valid", ks=(1,), max_len=4)
    (test_users, test_seqs), (_, valid_seqs) = calls
    idx = {iid: i for i, iid in enumerate(loo.item_ids)}
    row = list(loo.user_ids[test_users]).index("u1")
    assert test_seqs[row].tolist() == [0, idx["a"], idx["b"], idx["c"]]  # train + valid
    assert valid_seqs[row].tolist() == [0, 0, idx["a"], idx["b"]]  # train only


def test_chunked_scoring_matches_one_chunk():
    rng = np.random.default_rng(0)
    letters = "abcdefghij"
    seqs = {f"u{i}": "".join(rng.choice(list(letters), size=rng.integers(3, 8), replace=False)) for i in range(9)}
    split = leave_one_out(dataset(seqs))
    table = {u: {c: float(rng.normal()) for c in letters} for u in seqs}
    calls: list = []
    whole = evaluate_ranking(table_scores(split, table), split, "test", ks=(1, 3, 20), longtail_max_train=3)
    chunked = evaluate_ranking(table_scores(split, table, calls), split, "test", ks=(1, 3, 20),
                               max_scores=2 * (split.n_items + 1), longtail_max_train=3)  # two users per chunk
    assert 0 < whole["longtail_users"] < len(whole.users)
    assert len(calls) == math.ceil(len(whole.users) / 2)
    np.testing.assert_array_equal(whole.users, chunked.users)
    for key, values in whole.per_user.items():
        np.testing.assert_array_equal(values, chunked.per_user[key], err_msg=key)
    assert whole.metrics == chunked.metrics


def test_ratio_split_with_two_targets():
    # u1 saw a..h; ratios (.5, .25, .25) -> train a b c d, valid e f, test g h. u2 brings x, y, z.
    split = ratio_split(dataset({"u1": "abcdefgh", "u2": "xyz"}), (0.5, 0.25, 0.25))
    u1 = split.user_index("u1")
    assert split.targets("test").lengths()[u1] == 2
    fn = table_scores(split, {"u1": {"g": 5, "x": 4, "h": 3, "y": 2, "z": 1, "a": 50, "e": 40}})
    res = evaluate_ranking(fn, split, "test", ks=(1, 2, 3, 5), users=np.array([u1]))
    # a and e are seen (masked); ranking g x h y z -> targets at ranks 1 and 3.
    assert res["recall@1"] == pytest.approx(1 / 2)
    assert res["recall@2"] == pytest.approx(1 / 2)
    assert res["recall@3"] == pytest.approx(1.0)
    assert res["precision@5"] == pytest.approx(2 / 5)
    assert res["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert res["mrr@3"] == pytest.approx(1.0)


# --- long-tail slice -----------------------------------------------------------------


@pytest.fixture
def tail_loo() -> SplitData:
    # u1: train p q s, valid a, test t.  u2: train p q, valid b, test a.  u3: train p, valid a, test q.
    # Training counts: p 3, q 2, s 1, a b t 0. a is also the validation item of u1 and u3, so
    # counting train + valid would make u2's target a head item (2 > 1); the slice counts train only.
    return leave_one_out(dataset({"u1": "pqsat", "u2": "pqba", "u3": "paq"}))


TAIL_TABLE = {"u1": {"t": 5, "b": 1},  # p q s a seen -> t 1st
              "u2": {"s": 9, "t": 8, "a": 1},  # p q b seen -> s t a: target a 3rd
              "u3": {"q": 5}}  # p a seen -> q 1st


def test_longtail_slice_scores_only_users_whose_target_has_few_training_interactions(tail_loo):
    res = evaluate_ranking(table_scores(tail_loo, TAIL_TABLE), tail_loo, "test", ks=(2, 10), longtail_max_train=1)
    # Slice: u1 (t, 0 in train) and u2 (a, 0 in train); u3's q has 2 and stays out.
    assert by_user(tail_loo, res, "longtail") == {"u1": 1.0, "u2": 1.0, "u3": 0.0}
    assert res.per_user["longtail"].dtype == bool
    assert res["longtail_users"] == 2.0
    # u1 ranks its target 1st, u2 3rd.
    assert res["longtail_hit@2"] == 0.5 and res["longtail_ndcg@2"] == 0.5
    assert res["longtail_hit@10"] == 1.0
    assert res["longtail_ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert res["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4) + 1) / 3)  # the overall figure keeps u3
    u3 = by_user(tail_loo, res, "longtail_ndcg@10")["u3"]
    assert math.isnan(u3)  # outside the slice: no value, not a miss


def test_longtail_slice_is_fixed_by_training_counts_for_both_stages(tail_loo):
    res = evaluate_ranking(table_scores(tail_loo, TAIL_TABLE), tail_loo, "valid", ks=(10,), longtail_max_train=0)
    # Valid targets a, b, a have no training interactions, so all three are in the slice.
    assert res["longtail_users"] == 3.0


def test_multi_target_users_count_only_their_tail_targets_as_relevant():
    # u1: train a b c d, valid e f, test g h (ratios .5/.25/.25); u3 trains on g, so with
    # longtail_max_train=0 g is a head target and h the only tail one.
    split = ratio_split(dataset({"u1": "abcdefgh", "u2": "xyz", "u3": "gpqr"}), (0.5, 0.25, 0.25))
    u1 = split.user_index("u1")
    fn = table_scores(split, {"u1": {"g": 5, "x": 4, "h": 3, "y": 2, "z": 1, "a": 50, "e": 40}})
    res = evaluate_ranking(fn, split, "test", ks=(1, 3), users=np.array([u1]), longtail_max_train=0)
    # Ranking g x h ...: h is the only relevant item and sits 3rd, behind the head target g.
    assert res["longtail_users"] == 1.0
    assert res["longtail_hit@1"] == 0.0 and res["longtail_ndcg@1"] == 0.0
    assert res["longtail_hit@3"] == 1.0
    assert res["longtail_ndcg@3"] == pytest.approx(1 / math.log2(4))  # ideal DCG counts one target
    assert res["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))  # both targets


def test_an_empty_longtail_slice_reports_zero_users_and_no_means():
    # Every item is trained on exactly once, so nothing has 0 training interactions.
    split = leave_one_out(dataset({"u1": "abc", "u2": "cab", "u3": "bca"}))
    res = evaluate_ranking(random_scores(split), split, "test", ks=(10,), longtail_max_train=0)
    assert res["longtail_users"] == 0.0
    assert not {"longtail_hit@10", "longtail_ndcg@10"} & set(res.metrics)
    assert not res.per_user["longtail"].any()
    assert np.isnan(res.per_user["longtail_ndcg@10"]).all()


def test_longtail_none_turns_the_slice_off_and_never_changes_overall_metrics(tail_loo):
    fn = table_scores(tail_loo, TAIL_TABLE)
    off = evaluate_ranking(fn, tail_loo, "test", ks=(1, 10), longtail_max_train=None)
    on = evaluate_ranking(fn, tail_loo, "test", ks=(1, 10), longtail_max_train=1)
    assert not [k for k in [*off.metrics, *off.per_user] if k.startswith("longtail")]
    assert {k: v for k, v in on.metrics.items() if not k.startswith("longtail")} == off.metrics


# --- sampled negatives (eval/sampled.py) ------------------------------------------------

N_ITEMS = 150


@pytest.fixture(scope="module")
def split150():
    # 30 users x 6 items over a 150-item catalog (more than 100 + a history); every item is seen.
    rows = [(f"u{k}", f"i{(5 * k + j) % N_ITEMS:03d}", j) for k in range(30) for j in range(6)]
    return leave_one_out(Dataset("toy150", pd.DataFrame(rows, columns=["user", "item", "timestamp"])))


def oracle(split, stage):
    """Targets score 1, everything else (padding included) 0."""
    def fn(users, seqs):
        s = np.zeros((len(users), split.n_items + 1))
        for r, u in enumerate(users):
            s[r, split.targets(stage).of(u)] = 1.0
        return s
    return fn


def random_scores(split, seed=0):
    table = np.random.default_rng(seed).normal(size=(split.n_users, split.n_items + 1))
    return lambda users, seqs: table[users]


def test_every_key_and_the_protocol_say_sampled_100(split150):
    res = evaluate_sampled(oracle(split150, "test"), split150, "test", ks=(1, 10))
    assert res.protocol == "sampled-100"
    assert res.n_negatives == 100
    assert set(res.metrics) == set(res.per_user) == {
        f"sampled100_{m}@{k}" for m in ("hit", "recall", "precision", "ndcg", "mrr") for k in (1, 10)}
    assert res["sampled100_hit@1"] == 1.0 and res["sampled100_ndcg@10"] == 1.0
    assert res.n_short_users == 0


def test_a_constant_scorer_gets_nothing_because_ties_go_against_the_target(split150):
    def constant(users, seqs):
        return np.zeros((len(users), split150.n_items + 1))

    res = evaluate_sampled(constant, split150, "test", ks=(1, 100))
    assert res["sampled100_hit@100"] == 0.0  # target ranks 101st of 101
    assert res["sampled100_mrr@100"] == 0.0


def test_negatives_avoid_history_and_targets_and_are_distinct(split150):
    history, targets = split150.history("test"), split150.targets("test")
    for u in split150.eval_users("test"):
        exclude = np.concatenate([history.of(u), targets.of(u)])
        neg = sample_negatives(split150.n_items, exclude, 100, np.random.default_rng([0, int(u)]))
        assert len(neg) == 100 == len(set(neg.tolist()))
        assert not set(neg.tolist()) & set(exclude.tolist())
        assert neg.min() >= 1 and neg.max() <= split150.n_items


@pytest.mark.parametrize("n_items, n_excluded, n", [(100, 10, 5), (20, 5, 10)])  # rejection / enumeration
def test_sample_negatives_is_uniform_over_eligible_items(n_items, n_excluded, n):
    from scipy import stats

    exclude = np.arange(1, n_excluded + 1)
    rng = np.random.default_rng(0)
    counts = np.zeros(n_items + 1)
    for _ in range(1000):
        np.add.at(counts, sample_negatives(n_items, exclude, n, rng), 1)
    assert counts[: n_excluded + 1].sum() == 0
    assert stats.chisquare(counts[n_excluded + 1:]).pvalue > 1e-3


def test_results_are_seeded_and_do_not_depend_on_chunking_or_user_subset(split150):
    fn = random_scores(split150)
    a = evaluate_sampled(fn, split150, "test", ks=(10,), seed=3)
    b = evaluate_sampled(fn, split150, "test", ks=(10,), seed=3, max_scores=split150.n_items + 1)
    some = a.users[::3]
    c = evaluate_sampled(fn, split150, "test", ks=(10,), seed=3, users=some)
    other = evaluate_sampled(fn, split150, "test", ks=(10,), seed=4)
    np.testing.assert_array_equal(a.per_user["sampled100_ndcg@10"], b.per_user["sampled100_ndcg@10"])
    np.testing.assert_array_equal(a.per_user["sampled100_ndcg@10"][::3], c.per_user["sampled100_ndcg@10"])
    assert not np.array_equal(a.per_user["sampled100_ndcg@10"], other.per_user["sampled100_ndcg@10"])


def test_with_fewer_eligible_items_than_negatives_it_equals_masked_full_ranking(split150):
    # Every eligible item becomes a negative, so the candidates are exactly full ranking's.
    fn = random_scores(split150, seed=1)
    ks = (1, 5, 20)
    sampled = evaluate_sampled(fn, split150, "test", ks, n_negatives=N_ITEMS)
    full = evaluate_ranking(fn, split150, "test", ks)
    assert sampled.protocol == "sampled-150" and sampled.n_short_users == len(sampled.users)
    np.testing.assert_array_equal(sampled.users, full.users)
    for key, values in full.per_user.items():
        np.testing.assert_allclose(sampled.per_user[f"sampled150_{key}"], values, err_msg=key)
