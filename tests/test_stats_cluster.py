"""Cluster-robust errors against statsmodels' OLS(cov_type="cluster"), and the clustered null
simulation (small version; the full one is bench/coverage.py)."""
from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.stats import ttest_1samp

from bench.coverage import null_rejections
from harness.stats.cluster import clustered_paired_test, cluster_se, small_sample_factor, wilson_design


def test_cr1_equals_statsmodels_on_100_random_datasets():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(5, 300))
        g = rng.integers(0, int(rng.integers(2, 40)), n)
        if len(np.unique(g)) < 2:
            g[0], g[1] = 0, 1
        y = (rng.random(n) < rng.random()).astype(float) if rng.random() < 0.5 else rng.normal(size=n)
        mean, se, naive, n_g = cluster_se(y, g)
        fit = sm.OLS(y, np.ones(n)).fit(cov_type="cluster", cov_kwds={"groups": g, "use_correction": True})
        assert n_g == len(np.unique(g))
        assert mean == pytest.approx(fit.params[0], abs=1e-12)
        assert abs(se - fit.bse[0]) < 1e-10
        assert abs(naive - sm.OLS(y, np.ones(n)).fit().bse[0]) < 1e-10
        # the factor made explicit: without it statsmodels' uncorrected sandwich, times the factor
        raw = sm.OLS(y, np.ones(n)).fit(cov_type="cluster", cov_kwds={"groups": g, "use_correction": False})
        assert abs(se ** 2 - small_sample_factor(n, n_g) * raw.bse[0] ** 2) < 1e-12


def test_clustered_paired_test_is_the_t_test_on_cluster_means_for_equal_clusters():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(12), 5)
    d = rng.integers(-1, 2, g.size).astype(float) + np.repeat(rng.normal(0, 0.3, 12), 5)
    r = clustered_paired_test(d, g)
    want = ttest_1samp(d.reshape(12, 5).mean(1), 0.0)
    assert r["p"] == pytest.approx(want.pvalue, rel=1e-10)
    assert r["clusters"] == 12
    assert (r["ci_low"] > 0 or r["ci_high"] < 0) == (r["p"] < 0.05)


def test_wilson_design_is_wilson_at_deff_1_and_wider_above():
    from statsmodels.stats.proportion import proportion_confint
    assert wilson_design(30, 50, 1.0) == pytest.approx(proportion_confint(30, 50, method="wilson"))
    lo, hi = wilson_design(30, 50, 3.0)
    assert (lo, hi) == pytest.approx(proportion_confint(10, 50 / 3, method="wilson"))


def test_null_simulation_naive_rejects_often_clustered_near_alpha():
    r = null_rejections(400, rng=np.random.default_rng(5))
    assert 0.35 <= r["naive"] <= 0.55  # about 45 %: the design effect 1 + 9 x 0.7 = 7.3
    assert r["clustered"] <= 0.08  # <= 6 % in the full bench (2,000 datasets); 400 here: +2 points of noise
