from __future__ import annotations

import numpy as np
import pytest

from genrecsys.data.impressions import ImpressionSet
from genrecsys.data.splits import Part, SplitData
from genrecsys.data.synthetic import block_cycles
from genrecsys.eval.impressions import (evaluate_impressions, impression_metrics, impression_metrics_reference,
                                        summarize)


def test_hand_computed_impression():
    # clicks at candidates 0 and 3; ranking by score: c1 (0.9), c3 (0.8), c0 (0.5), c2 (0.1)
    s, y = np.array([0.5, 0.9, 0.1, 0.8]), np.array([1, 0, 0, 1])
    m = impression_metrics(s, y, np.array([0, 4]))
    assert m["auc"][0] == pytest.approx(0.5)  # pairs (c0,c1) lost, (c0,c2) won, (c3,c1) lost, (c3,c2) won
    assert m["mrr"][0] == pytest.approx((1 / 2 + 1 / 3) / 2)
    dcg = 1 / np.log2(3) + 1 / np.log2(4)
    assert m["ndcg@5"][0] == pytest.approx(dcg / (1 + 1 / np.log2(3)))


def test_ties_count_half_for_auc_and_keep_candidate_order_for_ranks():
    m = impression_metrics(np.array([0.3, 0.3, 0.3]), np.array([0, 1, 0]), np.array([0, 3]))
    assert m["auc"][0] == 0.5
    assert m["mrr"][0] == pytest.approx(1 / 2)  # the click is second among equals


def test_vectorised_metrics_agree_with_the_reference_loop():
    rng = np.random.default_rng(0)
    sizes = rng.integers(2, 40, size=300)
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    labels = np.zeros(indptr[-1], dtype=np.int8)
    for a, b in zip(indptr[:-1], indptr[1:]):
        k = rng.integers(1, b - a)
        labels[rng.choice(np.arange(a, b), size=k, replace=False)] = 1
    scores = rng.integers(0, 5, size=indptr[-1]).astype(float)  # many ties
    fast = impression_metrics(scores, labels, indptr)
    slow = impression_metrics_reference(scores, labels, indptr)
    for k in slow:
        np.testing.assert_allclose(fast[k], slow[k], rtol=0, atol=1e-12, err_msg=k)


def test_an_impression_without_both_labels_is_rejected():
    with pytest.raises(ValueError, match="clicked and one non-clicked"):
        impression_metrics(np.array([0.1, 0.2]), np.array([1, 1]), np.array([0, 2]))


def test_summary_reports_all_new_and_warm_groups():
    per = {"auc": np.array([1.0, 0.0, 0.5]), "mrr": np.array([1.0, 0.5, 0.25])}
    out = summarize(per, np.array([True, False, False]))
    assert out["auc"] == pytest.approx(0.5) and out["new_auc"] == 1.0 and out["warm_auc"] == 0.25
    assert out["new_impressions"] == 1 and out["warm_impressions"] == 2 and out["impressions"] == 3
    assert np.isnan(summarize(per, np.zeros(3, dtype=bool))["new_mrr"])


def _split_and_impressions():
    ds = block_cycles(n_users=4, items_per_group=5, length=4)
    # user 0 has 1 history item, users 1-3 have 6
    train = Part(np.array([0, 1, 7, 13, 19]), np.array([1, 1, 2, 3, 4, 5, 1, 6, 7, 8, 9, 10, 6, 1, 2, 3, 4, 5, 1]))
    empty = Part(np.zeros(5, dtype=np.int64), np.zeros(0, dtype=np.int64))
    split = SplitData(ds, np.array(["a", "b", "c", "d"]), np.array([""] + [f"i{i}" for i in range(1, 11)]),
                      train, empty, empty, "manual")
    imp = ImpressionSet(users=np.array([0, 1, 1, 2]), indptr=np.array([0, 3, 6, 8, 11]),
                        items=np.array([2, 9, 10, 3, 9, 10, 7, 1, 8, 2, 3]),
                        labels=np.array([1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0], dtype=np.int8))
    return split, imp


def test_evaluation_scores_candidates_from_the_history_and_groups_users():
    split, imp = _split_and_impressions()
    seen = []

    def oracle(users, seqs, cand):  # scores the clicked candidates highest
        seen.append((users.copy(), seqs.copy(), cand.copy()))
        clicked = {(0, 2), (1, 9), (1, 7), (2, 2)}
        return np.array([[1.0 if (u, c) in clicked else (0.0 if c else -9.0) for c in row]
                         for u, row in zip(users, cand)])

    res = evaluate_impressions(oracle, split, "valid", imp, max_len=4, batch_impressions=3)
    assert res.metrics["auc"] == 1.0 and res.metrics["mrr"] == 1.0
    assert res.metrics["new_impressions"] == 1 and res.metrics["warm_impressions"] == 3  # user 0 has 1 item
    users, seqs, cand = seen[0]
    assert seqs.shape == (3, 4) and seqs[0].tolist() == [0, 0, 0, 1]  # left-padded history
    assert cand.shape == (3, 3) and cand[2].tolist() == [7, 1, 0]  # padded with 0
    assert len(seen) == 2 and seen[1][2].tolist() == [[8, 2, 3]]  # the last batch: one impression
    assert res.users.tolist() == [0, 1, 2]  # per-user means for paired tests
    assert res.per_user["auc"].tolist() == [1.0, 1.0, 1.0]


def test_a_constant_scorer_gets_auc_one_half():
    split, imp = _split_and_impressions()
    res = evaluate_impressions(lambda u, s, c: np.zeros(c.shape), split, "valid", imp)
    assert res.metrics["auc"] == 0.5
