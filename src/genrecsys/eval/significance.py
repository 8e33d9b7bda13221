"""Paired significance tests for per-user metric values of two systems.

Both arrays hold one value per user, aligned (a[i] and b[i] are the same user). The
difference is always taken as **b − a**: with A the baseline, a positive difference
means B is better.

>>> import numpy as np
>>> r = paired_tests(np.array([0.0, 0.5, 1.0, 0.2]), np.array([0.1, 0.6, 1.0, 0.5]))
>>> round(r["mean_diff"], 4), r["n"]
(0.125, 4)
"""
from __future__ import annotations

import math
import warnings

import numpy as np


def paired_tests(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Paired t-test and Wilcoxon signed-rank test of b − a, with a t-based CI.

    Returns a dict of floats (n is an int):
      n                  number of pairs
      mean_a, mean_b     the two means
      mean_diff          mean of b − a
      ci_low, ci_high    `confidence` interval of mean_diff (Student t, n − 1 dof)
      t_stat, t_pvalue   two-sided paired t-test (scipy.stats.ttest_rel(b, a))
      wilcoxon_pvalue    two-sided Wilcoxon signed-rank test; zero differences are
                         dropped (zero_method="wilcox"), as is usual for per-user IR metrics
      n_nonzero          pairs whose difference is not zero

    Degenerate inputs never crash: when every difference is zero both p-values are 1.0
    and the CI is [0, 0]; when all differences are equal but not zero the CI collapses
    to that value and the t-test p-value is 0.0; with a single pair the t-test and CI
    are NaN.
    """
    from scipy import stats

    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired arrays differ in length: {x.shape[0]} vs {y.shape[0]}")
    if len(x) == 0:
        raise ValueError("paired_tests needs at least one pair")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("paired arrays contain NaN")
    d = y - x
    n = len(d)
    mean = float(d.mean())
    nonzero = int(np.count_nonzero(d))
    out: dict[str, float] = {"n": n, "mean_a": float(x.mean()), "mean_b": float(y.mean()), "mean_diff": mean,
                             "n_nonzero": nonzero}
    if nonzero == 0:
        return out | {"ci_low": 0.0, "ci_high": 0.0, "t_stat": 0.0, "t_pvalue": 1.0, "wilcoxon_pvalue": 1.0}
    if n < 2:
        out |= {"ci_low": math.nan, "ci_high": math.nan, "t_stat": math.nan, "t_pvalue": math.nan}
    elif np.all(d == d[0]):  # no spread: the t statistic is infinite
        out |= {"ci_low": mean, "ci_high": mean, "t_stat": math.copysign(math.inf, mean), "t_pvalue": 0.0}
    else:
        sem = float(d.std(ddof=1) / math.sqrt(n))
        half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * sem
        t = stats.ttest_rel(y, x)
        out |= {"ci_low": mean - half, "ci_high": mean + half, "t_stat": float(t.statistic),
                "t_pvalue": float(t.pvalue)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small-sample / tie approximations
        out["wilcoxon_pvalue"] = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    return out
