"""Cluster-robust standard errors when rows share an item (templates x exemplar draws x seeds on the
same example): CR1, the sandwich of OLS of the outcome on a constant with the small-sample factor
G / (G - 1) * (N - 1) / (N - K) written out (K = 1 parameter, so it is G / (G - 1)), and the paired
test on the cluster-level differences.

    mean, se, se_naive, g = cluster_se(y, item_ids)

Checked against statsmodels' OLS(..., cov_type="cluster") in tests/test_stats_cluster.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import t as student_t


def small_sample_factor(n_rows: int, n_clusters: int, k: int = 1) -> float:
    """CR1's factor G / (G - 1) * (N - 1) / (N - K) (statsmodels' default `use_correction=True`)."""
    return n_clusters / (n_clusters - 1) * (n_rows - 1) / (n_rows - k)


def cluster_se(y, groups) -> tuple[float, float, float, int]:
    """(mean, CR1 standard error of the mean, naive OLS standard error, clusters). With one cluster
    the clustered error is NaN. With one row per cluster CR1 equals the naive error exactly."""
    y = np.asarray(y, dtype=float)
    g = pd.factorize(pd.Series(groups).astype(str))[0]
    n = y.size
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(y.mean())
    e = y - mean
    naive = float(np.sqrt((e @ e) / (n - 1) / n)) if n > 1 else float("nan")
    n_g = int(g.max()) + 1
    if n_g < 2:
        return mean, float("nan"), naive, n_g
    sums = np.bincount(g, weights=e, minlength=n_g)
    var = small_sample_factor(n, n_g) * float(sums @ sums) / (n * n)
    return mean, float(np.sqrt(var)), naive, n_g


def design_effect(y, groups) -> float:
    """(clustered / naive standard error)^2: how many rows one independent row is worth, inverted."""
    _, se, naive, _ = cluster_se(y, groups)
    return float((se / naive) ** 2) if naive > 0 and se == se else float("nan")


def clustered_paired_test(diff_rows, groups, *, alpha: float = 0.05) -> dict:
    """The paired test and interval on row differences (A - B, one per row of a shared item): the mean
    difference, its CR1 standard error, t = mean / se on G - 1 degrees of freedom, the two-sided p and
    the interval mean +- t_(1-alpha/2, G-1) se (it excludes 0 exactly when p < alpha). With equal rows
    per cluster this is the one-sample t-test on the cluster means."""
    mean, se, naive, n_g = cluster_se(diff_rows, groups)
    if n_g < 2 or not se > 0:
        p = 1.0 if n_g >= 2 and mean == 0 else float("nan")
        return {"diff": mean, "se": se, "se_naive": naive, "clusters": n_g, "p": p,
                "ci_low": mean if p == 1.0 else float("nan"), "ci_high": mean if p == 1.0 else float("nan")}
    df = n_g - 1
    tstat = mean / se
    p = float(2 * student_t.sf(abs(tstat), df))
    half = float(student_t.isf(alpha / 2, df)) * se
    lo, hi = mean - half, mean + half
    if p < alpha and lo <= 0 <= hi:  # rounding at the boundary: keep the interval with its test
        lo, hi = (np.nextafter(0, 1), hi) if mean > 0 else (lo, np.nextafter(0, -1))
    return {"diff": mean, "se": se, "se_naive": naive, "clusters": n_g, "p": p, "ci_low": float(lo),
            "ci_high": float(hi)}


def wilson_design(successes: float, n: int, deff: float, *, alpha: float = 0.05) -> tuple[float, float]:
    """The Wilson interval at the effective sample size n / deff (deff = design effect, at least 1):
    the cell's interval when its rows share items. deff = 1 gives the plain Wilson interval."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return float("nan"), float("nan")
    deff = max(1.0, deff) if deff == deff else 1.0
    n_eff = n / deff
    lo, hi = proportion_confint(successes / n * n_eff, n_eff, alpha=alpha, method="wilson")
    return float(lo), float(hi)
