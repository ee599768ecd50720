"""harness.stats: Tango's score interval and test against a brute-force inversion written here (the
constrained likelihood maximised numerically, the interval read off a grid), the test at 0 against
statsmodels' McNemar, Holm against statsmodels, and interval-test agreement on a grid of tables."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import norm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from harness.stats.paired import family_intervals, holm_adjust, score_interval, score_p_value, score_z


def brute_z(b: int, c: int, n: int, d: float) -> float:
    """The score statistic from the multinomial likelihood maximised numerically under A - B = d."""
    lo, hi = max(0.0, -d) + 1e-13, (1 - d) / 2 - 1e-13
    conc = n - b - c

    def nll(q):
        return -((b * np.log(q + d) if b else 0) + (c * np.log(q) if c else 0)
                 + (conc * np.log(1 - 2 * q - d) if conc else 0))
    q = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-14}).x
    return (b - c - n * d) / np.sqrt(n * (2 * q + d * (1 - d)))


@pytest.mark.parametrize("b,c,n,d", [(12, 4, 50, 0.1), (12, 4, 50, -0.1), (3, 9, 30, 0.05), (0, 5, 40, 0.2),
                                     (20, 1, 25, 0.5), (7, 7, 1000, -0.01)])
def test_score_statistic_equals_the_likelihood_maximised_numerically(b, c, n, d):
    assert score_z(b, c, n, d) == pytest.approx(brute_z(b, c, n, d), rel=1e-6)


@pytest.mark.parametrize("b,c,n,alpha", [(12, 4, 50, 0.05), (3, 9, 30, 0.05), (0, 0, 20, 0.05), (7, 0, 10, 0.05),
                                         (5, 17, 50, 0.05 / 6), (40, 38, 1000, 0.01)])
def test_interval_is_the_brute_force_inversion_of_the_test(b, c, n, alpha):
    """Each end: where the numerically maximised statistic crosses the critical value (brentq), or the
    end of the parameter range when it never does."""
    zc = norm.isf(alpha / 2)
    d = (b - c) / n
    edge = 1 - 1e-9

    def f(x, target):
        return np.nan_to_num(brute_z(b, c, n, x)) - target
    want_lo = -1.0 if f(-edge, zc) <= 0 else brentq(f, -edge, d, args=(zc,), xtol=1e-12)
    want_hi = 1.0 if f(edge, -zc) >= 0 else brentq(f, d, edge, args=(-zc,), xtol=1e-12)
    lo, hi = score_interval(b, c, n, alpha)
    assert lo == pytest.approx(want_lo, abs=1e-6) and hi == pytest.approx(want_hi, abs=1e-6)


def test_score_test_is_mcnemar_without_correction():
    for b, c in [(12, 4), (3, 9), (1, 0), (30, 41), (0, 7)]:
        want = mcnemar([[10, b], [c, 10]], exact=False, correction=False).pvalue
        assert score_p_value(b, c) == pytest.approx(want, rel=1e-12)
    assert score_p_value(0, 0) == 1.0


def test_interval_excludes_zero_exactly_when_the_test_rejects_on_a_grid():
    rows = [(b, c, n, a) for n in (10, 30, 50) for b, c in itertools.product(range(0, n + 1, 3), repeat=2)
            if b + c <= n for a in (0.05, 0.05 / 6, 0.2)]
    b, c, n, a = map(np.array, zip(*rows))
    lo, hi = score_interval(b, c, n, a)
    excl = (lo > 0) | (hi < 0)
    np.testing.assert_array_equal(excl, score_p_value(b, c) < a)
    assert (lo <= (b - c) / n).all() and ((b - c) / n <= hi).all()


def test_holm_equals_statsmodels():
    rng = np.random.default_rng(0)
    for m in (1, 2, 6, 15):
        p = rng.random(m) ** 3
        np.testing.assert_allclose(holm_adjust(p), multipletests(p, method="holm")[1], rtol=1e-12)
    out = holm_adjust([0.01, np.nan, 0.04])
    np.testing.assert_allclose(out[[0, 2]], multipletests([0.01, 0.04], method="holm")[1])
    assert np.isnan(out[1])


def test_family_intervals_agree_with_holm_and_use_the_bonferroni_level():
    rng = np.random.default_rng(1)
    cut_seen = 0
    for _ in range(150):
        m = int(rng.integers(1, 8))
        n = rng.integers(20, 120, m)
        b = np.array([rng.integers(0, k // 2) for k in n])
        c = np.array([rng.integers(0, k // 2) for k in n])
        f = family_intervals(b, c, n)
        excl = (f["ci_low"] > 0) | (f["ci_high"] < 0)
        np.testing.assert_array_equal(excl, f["p_holm"] < 0.05)
        np.testing.assert_allclose(f["level"], 1 - 0.05 / m)
        lo, hi = score_interval(b, c, n, 0.05 / m)  # untouched where Holm and Bonferroni agree
        keep = ~f["truncated"]
        np.testing.assert_allclose(f["ci_low"][keep], np.atleast_1d(lo)[keep])
        np.testing.assert_allclose(f["ci_high"][keep], np.atleast_1d(hi)[keep])
        cut_seen += int(f["truncated"].sum())
    assert cut_seen > 0  # the grid reaches the case Holm rejects and Bonferroni does not
