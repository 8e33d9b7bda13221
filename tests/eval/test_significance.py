"""Paired tests: hand-checked statistics and degenerate inputs that must not crash."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from genrecsys.eval.significance import paired_tests


def test_difference_ci_and_t_test_by_hand():
    a = np.array([0.0, 0.5, 1.0, 0.2])
    b = np.array([0.1, 0.6, 1.0, 0.5])
    r = paired_tests(a, b)
    # d = b - a = [0.1, 0.1, 0.0, 0.3]: mean 0.125; squared deviations .000625 + .000625 +
    # .015625 + .030625 = .0475, sample variance .0475 / 3, sem = sqrt(.0475 / 3) / 2 = 0.0629...
    assert r["n"] == 4 and r["n_nonzero"] == 3
    assert r["mean_a"] == pytest.approx(0.425) and r["mean_b"] == pytest.approx(0.55)
    assert r["mean_diff"] == pytest.approx(0.125)
    sem = math.sqrt(0.0475 / 3) / 2
    assert r["t_stat"] == pytest.approx(0.125 / sem)
    assert r["t_stat"] == pytest.approx(1.98680, abs=1e-5)
    half = stats.t.ppf(0.975, 3) * sem
    assert stats.t.ppf(0.975, 3) == pytest.approx(3.182446, abs=1e-6)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.125 - half, 0.125 + half))
    assert r["t_pvalue"] == pytest.approx(2 * stats.t.sf(0.125 / sem, 3))


def test_wilcoxon_exact_p_by_hand():
    # Five differences, all positive and distinct: W- = 0, exact two-sided p = 2 / 2^5.
    a = np.zeros(5)
    b = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    assert paired_tests(a, b)["wilcoxon_pvalue"] == pytest.approx(2 / 32)
    # Swapping the arguments flips the sign of the difference only.
    r_ab, r_ba = paired_tests(a, b), paired_tests(b, a)
    assert r_ab["mean_diff"] == -r_ba["mean_diff"]
    assert r_ab["t_pvalue"] == pytest.approx(r_ba["t_pvalue"])
    assert r_ab["wilcoxon_pvalue"] == pytest.approx(r_ba["wilcoxon_pvalue"])


def test_all_zero_differences_give_p_one():
    x = np.array([0.0, 1.0, 0.5, 0.5])
    r = paired_tests(x, x.copy())
    assert r["t_pvalue"] == 1.0 and r["wilcoxon_pvalue"] == 1.0
    assert r["mean_diff"] == 0.0 and (r["ci_low"], r["ci_high"]) == (0.0, 0.0)


def test_constant_nonzero_difference_and_single_pair_do_not_crash():
    r = paired_tests(np.zeros(6), np.full(6, 0.5))
    assert r["t_pvalue"] == 0.0 and r["ci_low"] == r["ci_high"] == 0.5
    assert r["wilcoxon_pvalue"] == pytest.approx(2 / 64)
    one = paired_tests(np.array([0.0]), np.array([1.0]))
    assert one["mean_diff"] == 1.0 and math.isnan(one["t_pvalue"]) and math.isnan(one["ci_low"])


def test_mostly_tied_per_user_metrics_still_test():
    # Typical hit@10 vectors: mostly 0/0 and 1/1 pairs, a few flips in B's favour.
    a = np.array([0] * 40 + [1] * 10 + [0] * 10 + [1] * 2, dtype=float)
    b = np.array([0] * 40 + [1] * 10 + [1] * 10 + [0] * 2, dtype=float)
    r = paired_tests(a, b)
    assert r["n_nonzero"] == 12 and r["mean_diff"] == pytest.approx(8 / 62)
    assert 0 < r["wilcoxon_pvalue"] < 0.05 and 0 < r["t_pvalue"] < 0.05


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="length"):
        paired_tests(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least one"):
        paired_tests(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        paired_tests(np.array([0.0, np.nan]), np.zeros(2))
