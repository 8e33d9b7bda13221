"""Every metric against values computed by hand (written out below), plus edge cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from genrecsys.eval.metrics import (
    auc,
    gauc,
    hit_at_k,
    mrr_at_k,
    mrr_score,
    ndcg_at_k,
    ndcg_score,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

L2, L3, L4, L5 = 1.0, 1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(5)  # Ln = 1/log2(n), rank n-1


def H(*rows: str) -> np.ndarray:
    """Hit matrix from strings: 'x' = target at that rank, '.' = miss."""
    return np.array([[c == "x" for c in r] for r in rows])


# --- top-K hit-matrix metrics -------------------------------------------------------

def test_ndcg_two_targets_at_ranks_1_and_3():
    assert ndcg_at_k(H("x.x."), np.array([2]), 4)[0] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))


def test_ndcg_single_target_is_inverse_log_rank():
    hits = H("x...", ".x..", "..x.", "...x")
    assert ndcg_at_k(hits, np.ones(4, int), 4) == pytest.approx([L2, L3, L4, L5])


def test_ndcg_ideal_is_capped_at_k_when_targets_outnumber_k():
    # 5 targets, all of the top 2 hit: DCG = IDCG over 2 positions -> 1.0, not 2-of-5-ideal.
    assert ndcg_at_k(H("xx.."), np.array([5]), 2)[0] == pytest.approx(1.0)
    # ranks 2, 3 hit with 3 targets at k=3: (1/log2 3 + 1/2) / (1 + 1/log2 3 + 1/2)
    assert ndcg_at_k(H(".xx"), np.array([3]), 3)[0] == pytest.approx((L3 + L4) / (L2 + L3 + L4))


def test_recall_divides_by_all_targets_even_beyond_k():
    # 3 targets, k=2, both top-2 items hit: recall 2/3 (RecBole's definition), not 1.
    assert recall_at_k(H("xx."), np.array([3]), 2)[0] == pytest.approx(2 / 3)
    assert recall_at_k(H("x.x."), np.array([2]), 2)[0] == pytest.approx(1 / 2)


def test_hit_precision_mrr_by_hand():
    hits = H("..x.", "x.x.", "....")
    assert list(hit_at_k(hits, 2)) == [0.0, 1.0, 0.0]
    assert list(hit_at_k(hits, 3)) == [1.0, 1.0, 0.0]
    assert precision_at_k(hits, 4) == pytest.approx([1 / 4, 2 / 4, 0.0])
    assert mrr_at_k(hits, 4) == pytest.approx([1 / 3, 1.0, 0.0])
    assert mrr_at_k(hits, 2) == pytest.approx([0.0, 1.0, 0.0])  # first hit beyond k counts 0


def test_no_hits_give_zero_everywhere():
    out = ranking_metrics(H("....", "...."), np.array([1, 3]), (1, 4))
    assert all((v == 0).all() for v in out.values())
    assert set(out) == {f"{m}@{k}" for m in ("hit", "recall", "precision", "ndcg", "mrr") for k in (1, 4)}


def test_user_without_targets_scores_zero_not_nan():
    out = ranking_metrics(H("...."), np.array([0]), (4,))
    assert all(v[0] == 0 and not np.isnan(v[0]) for v in out.values())


def test_k_larger_than_the_hit_list():
    hits = H(".x")  # only 2 ranks computed, asked for k=10
    assert ndcg_at_k(hits, np.array([1]), 10)[0] == pytest.approx(L3)
    assert ndcg_at_k(hits, np.array([3]), 10)[0] == pytest.approx(L3 / (L2 + L3 + L4))
    assert hit_at_k(hits, 10)[0] == 1.0
    assert recall_at_k(hits, np.array([1]), 10)[0] == 1.0
    assert precision_at_k(hits, 10)[0] == pytest.approx(1 / 10)  # divides by k, not the list length
    assert mrr_at_k(hits, 10)[0] == pytest.approx(1 / 2)


def test_ndcg_beyond_the_precomputed_discount_table():
    k = 12_000
    hits = np.zeros((1, k), dtype=bool)
    hits[0, k - 1] = True
    assert ndcg_at_k(hits, np.array([1]), k)[0] == pytest.approx(1 / math.log2(k + 1))


# --- AUC / GAUC -----------------------------------------------------------------------

def _auc_all_pairs(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_auc_by_hand():
    assert auc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 1, 0, 0])) == 1.0
    assert auc(np.array([0.1, 0.2, 0.3]), np.array([1, 0, 0])) == 0.0
    # pos {0.8, 0.4} vs neg {0.6, 0.2}: pairs 0.8>0.6, 0.8>0.2, 0.4<0.6, 0.4>0.2 -> 3/4
    assert auc(np.array([0.8, 0.6, 0.4, 0.2]), np.array([1, 0, 1, 0])) == pytest.approx(3 / 4)


def test_auc_ties_count_half():
    assert auc(np.full(5, 0.3), np.array([1, 0, 1, 0, 0])) == pytest.approx(0.5)
    # pos {0.5, 0.9} vs neg {0.5, 0.1}: tie, win, win, win -> 3.5/4
    assert auc(np.array([0.5, 0.9, 0.5, 0.1]), np.array([1, 1, 0, 0])) == pytest.approx(3.5 / 4)


def test_auc_agrees_with_all_pairs_on_random_data():
    rng = np.random.default_rng(0)
    for n in (2, 7, 50, 300):
        scores = rng.integers(0, 5, size=n).astype(float)  # many ties
        labels = rng.integers(0, 2, size=n)
        labels[:2] = (0, 1)
        assert auc(scores, labels) == pytest.approx(_auc_all_pairs(scores, labels))
        cont = rng.normal(size=n)
        assert auc(cont, labels) == pytest.approx(_auc_all_pairs(cont, labels))


def test_auc_rejects_one_class_and_swapped_arguments():
    with pytest.raises(ValueError, match="undefined"):
        auc(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="binary"):
        auc(np.array([1, 0]), np.array([0.3, 0.7]))


def test_gauc_weights_groups_by_size_and_skips_single_class_groups():
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.6, 0.7, 0.3, 0.4])
    labels = np.array([1, 0, 0, 1, 0, 1, 1, 1, 1])
    groups = np.array(["a", "a", "b", "b", "b", "b", "c", "c", "d"])
    # a: pos 0.9 > neg 0.1 -> 1.0 (2 rows). b: pos {0.2, 0.6} vs neg {0.5, 0.8}: one win of 4 -> 0.25 (4 rows).
    # c (all positive) and d (one row) are skipped: (2 * 1.0 + 4 * 0.25) / 6 = 0.5.
    assert gauc(scores, labels, groups) == pytest.approx(0.5)


def test_gauc_agrees_with_per_group_auc_loop():
    rng = np.random.default_rng(1)
    n = 400
    scores = rng.integers(0, 6, size=n).astype(float)
    labels = rng.integers(0, 2, size=n)
    groups = rng.integers(0, 40, size=n)
    num = den = 0.0
    for g in np.unique(groups):
        m = groups == g
        if 0 < labels[m].sum() < m.sum():
            num += m.sum() * _auc_all_pairs(scores[m], labels[m])
            den += m.sum()
    assert gauc(scores, labels, groups) == pytest.approx(num / den)


def test_gauc_of_one_group_is_auc():
    rng = np.random.default_rng(2)
    s, y = rng.normal(size=30), np.arange(30) % 2
    assert gauc(s, y, np.zeros(30)) == pytest.approx(auc(s, y))


def test_gauc_with_no_two_class_group_raises():
    with pytest.raises(ValueError, match="no group"):
        gauc(np.array([0.1, 0.2]), np.array([1, 0]), np.array([1, 2]))


# --- impression metrics (MIND) ----------------------------------------------------------

def test_mrr_score_averages_over_all_clicks():
    # order by score: c2 (0.9, click), c0 (0.7), c3 (0.5, click), c1 (0.1) -> clicks at ranks 1, 3
    s, y = np.array([0.7, 0.1, 0.9, 0.5]), np.array([0, 0, 1, 1])
    assert mrr_score(s, y) == pytest.approx((1 / 1 + 1 / 3) / 2)
    assert mrr_score(np.array([0.2, 0.8]), np.array([1, 0])) == pytest.approx(1 / 2)


def test_ndcg_score_by_hand():
    s, y = np.array([0.7, 0.1, 0.9, 0.5]), np.array([0, 0, 1, 1])
    assert ndcg_score(s, y, k=4) == pytest.approx((L2 + L4) / (L2 + L3))
    assert ndcg_score(s, y, k=2) == pytest.approx(L2 / (L2 + L3))  # rank-3 click is cut off
    assert ndcg_score(s, y, k=1) == pytest.approx(1.0)
    assert ndcg_score(s, y, k=10) == pytest.approx((L2 + L4) / (L2 + L3))  # k beyond the list


def test_impression_metrics_break_ties_by_candidate_order():
    s = np.zeros(3)
    assert mrr_score(s, np.array([0, 1, 0])) == pytest.approx(1 / 2)
    assert ndcg_score(s, np.array([0, 0, 1]), k=3) == pytest.approx(L4)


def test_impression_without_click_raises():
    with pytest.raises(ValueError, match="no positive"):
        mrr_score(np.array([0.1, 0.2]), np.array([0, 0]))
    with pytest.raises(ValueError, match="no positive"):
        ndcg_score(np.array([0.1, 0.2]), np.array([0, 0]))
