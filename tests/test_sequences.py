"""The race's confidence sequence (harness/stats/sequences.py) against independent code:
direct transcriptions of the supermartingales written item by item from the paper (brute force),
and Monte Carlo time-uniform coverage: the probability that the sequence EVER excludes the true
difference over all looks must be at most alpha (within Monte Carlo error), with and without
replacement. A fixed-n interval looked at every t fails the same Monte Carlo (so it can fail)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats.sequences import (betting_log_capital, betting_lower, confidence_sequence, eb_upper,
                                     fixed_n_interval, paired_betting_sequence,
                                     paired_confidence_sequence)


def _log_capital(x: list[float], m: float, alpha: float, N: int | None) -> list[float]:
    """log of prod_i exp(lam_i (mu_i(m) - X_i) - v_i psi_E(lam_i)), the supermartingale whose
    crossing of log(1/alpha) rejects a mean m from above; written item by item from the paper."""
    out, logk, s, sq = [], 0.0, 0.0, 0.0
    mu_prev, sigma2_prev = 0.5, 0.25
    for t, xt in enumerate(x, start=1):
        lam = min(math.sqrt(2 * math.log(1 / alpha) / (sigma2_prev * t * math.log(1 + t))), 0.5)
        cond_mean = m if N is None else (N * m - s) / (N - t + 1)
        v = 4 * (xt - mu_prev) ** 2
        logk += lam * (cond_mean - xt) - v * (-math.log(1 - lam) - lam) / 4
        out.append(logk)
        s += xt
        mu_t = (0.5 + s) / (t + 1)
        sq += (xt - mu_t) ** 2
        mu_prev, sigma2_prev = mu_t, (0.25 + sq) / (t + 1)
    return out


@pytest.mark.parametrize("N", [None, 120])
def test_closed_form_is_the_supermartingale_boundary(N):
    rng = np.random.default_rng(3)
    x = list(rng.choice([0.0, 0.5, 1.0], p=[0.2, 0.5, 0.3], size=120 if N else 300))
    alpha = 0.05
    upper = eb_upper(np.array(x), alpha=alpha, population=N)
    crit = math.log(1 / alpha)
    for t in (5, 40, 119, len(x) - 1):
        def rejects(m: float) -> bool:
            return _log_capital(x[:t + 1], m, alpha, N)[-1] >= crit
        coarse = [rejects(m) for m in np.linspace(0, 1, 21)]
        assert coarse == sorted(coarse)  # monotone: rejected means form an interval [boundary, 1]
        if not rejects(1.0):
            assert upper[t] >= 1, (t, upper[t])
            continue
        lo_m, hi_m = 0.0, 1.0  # bisection for the smallest rejected mean
        for _ in range(40):
            mid = (lo_m + hi_m) / 2
            lo_m, hi_m = (lo_m, mid) if rejects(mid) else (mid, hi_m)
        assert abs(hi_m - upper[t]) < 1e-9, (t, hi_m, upper[t])


def _ever_missed(lo, hi, truth) -> np.ndarray:
    return ((lo > truth + 1e-12) | (hi < truth - 1e-12)).any(axis=-1)


def _mc_bound(alpha: float, reps: int) -> float:
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / reps)


@pytest.mark.parametrize("p_win,p_loss", [(0.15, 0.05), (0.3, 0.3), (0.02, 0.0), (0.45, 0.1)])
def test_time_uniform_coverage_iid(p_win, p_loss):
    reps, T, alpha = 2000, 400, 0.1
    rng = np.random.default_rng(11)
    u = rng.random((reps, T))
    a = (u < p_win).astype(float)                    # item a-right, b-wrong
    b = ((u >= p_win) & (u < p_win + p_loss)).astype(float)
    truth = p_win - p_loss
    lo, hi = paired_confidence_sequence(a, b, alpha=alpha)
    assert _ever_missed(lo, hi, truth).mean() <= _mc_bound(alpha, reps)
    # each side alone at alpha/2 (the race uses the sides separately)
    assert (lo > truth + 1e-12).any(axis=-1).mean() <= _mc_bound(alpha / 2, reps)
    assert (hi < truth - 1e-12).any(axis=-1).mean() <= _mc_bound(alpha / 2, reps)


@pytest.mark.parametrize("n_win,n_loss,N", [(60, 20, 300), (90, 90, 300), (5, 0, 200)])
def test_time_uniform_coverage_without_replacement(n_win, n_loss, N):
    """A finite pool of N paired differences in a random order: the target is the pool's mean."""
    reps, alpha = 2000, 0.1
    pool = np.array([1.0] * n_win + [-1.0] * n_loss + [0.0] * (N - n_win - n_loss))
    rng = np.random.default_rng(5)
    d = np.array([rng.permutation(pool) for _ in range(reps)])
    a, b = (d > 0).astype(float), (d < 0).astype(float)
    truth = pool.mean()
    lo, hi = paired_confidence_sequence(a, b, alpha=alpha, population=N)
    assert _ever_missed(lo, hi, truth).mean() <= _mc_bound(alpha, reps)
    assert (lo > truth + 1e-12).any(axis=-1).mean() <= _mc_bound(alpha / 2, reps)
    assert np.median(hi[:, -1] - lo[:, -1]) < 0.1  # at t = N it knows the whole pool
    # without replacement the sequence closes in on the pool's value: narrower than the i.i.d. one
    lo_iid, hi_iid = paired_confidence_sequence(a, b, alpha=alpha)
    assert np.median(hi[:, -1] - lo[:, -1]) < 0.6 * np.median(hi_iid[:, -1] - lo_iid[:, -1])


def test_a_fixed_n_interval_looked_at_every_t_fails_the_same_check():
    reps, T, alpha = 2000, 400, 0.1
    rng = np.random.default_rng(2)
    u = rng.random((reps, T))
    a, b = (u < 0.3).astype(float), ((u >= 0.3) & (u < 0.6)).astype(float)
    lo, hi = fixed_n_interval(a, b, alpha=alpha)
    looks = np.arange(15, T, 16)  # after every batch of 16
    missed = _ever_missed(lo[:, looks], hi[:, looks], 0.0).mean()
    assert missed > 2.5 * alpha
    # at one pre-set n it is a fine interval: coverage close to nominal
    assert abs((lo[:, -1] > 0).mean() + (hi[:, -1] < 0).mean() - alpha) < 0.03


def test_shapes_ranges_and_bad_input():
    lo, hi = confidence_sequence(np.full(50, 0.5), alpha=0.05)
    assert lo.shape == hi.shape == (50,)
    assert (lo <= 0.5).all() and (hi >= 0.5).all() and (np.diff(hi) <= 0).all() and (np.diff(lo) >= 0).all()
    assert hi[-1] - lo[-1] < 0.4
    with pytest.raises(ValueError):
        confidence_sequence([0.2, 1.5])
    with pytest.raises(ValueError):
        eb_upper(np.ones(10), alpha=0.05, population=5)
    with pytest.raises(ValueError):
        paired_confidence_sequence([1, 0], [1])


# -- the betting sequence (the race's default)

def _betting_capital(x: list[float], m: float, alpha: float, N: int | None) -> list[float]:
    """log K_t(m) = sum log(1 + lam_i(m)(X_i - mu_i(m))), lam_i(m) = min(plug-in bet, 1/2 / mu_i(m)),
    item by item from the paper (Waudby-Smith & Ramdas, Section 4; without replacement, Section 6)."""
    out, logk, s, sq = [], 0.0, 0.0, 0.0
    mu_prev, sigma2_prev = 0.5, 0.25
    for t, xt in enumerate(x, start=1):
        lamdot = math.sqrt(2 * math.log(1 / alpha) / (sigma2_prev * t * math.log(1 + t)))
        mu_i = m if N is None else min(max((N * m - s) / (N - t + 1), 0.0), 1.0)
        lam = lamdot if mu_i == 0 else min(lamdot, 0.5 / mu_i)
        logk += math.log1p(lam * (xt - mu_i))
        s += xt
        out.append(math.inf if N is not None and N * m < s - 1e-9 else logk)
        mu_t = (0.5 + s) / (t + 1)
        sq += (xt - mu_t) ** 2
        sigma2_prev = (0.25 + sq) / (t + 1)
    return out


@pytest.mark.parametrize("N", [None, 150])
def test_betting_capital_and_its_inversion(N):
    rng = np.random.default_rng(4)
    x = rng.choice([0.0, 0.5, 1.0], p=[0.15, 0.6, 0.25], size=150)
    alpha = 0.05
    for m in (0.3, 0.5, 0.55, 0.7):
        got = betting_log_capital(x, m, alpha=alpha, population=N)
        want = np.array(_betting_capital(list(x), m, alpha, N))
        finite = np.isfinite(want)
        assert (np.isfinite(got) == finite).all() and np.allclose(got[finite], want[finite], atol=1e-9)
    ends = [10, 40, 100, 150]
    lower = betting_lower(x, ends, alpha=alpha, population=N)
    crit = math.log(1 / alpha)
    for k, t in enumerate(ends):   # the bound is where the capital stops crossing (to 2**-14)
        assert _betting_capital(list(x[:t]), lower[k] + 1e-4, alpha, N)[-1] < crit
        if lower[k] > 1e-4:
            assert _betting_capital(list(x[:t]), lower[k] - 1e-4, alpha, N)[-1] >= crit


def _betting_ever_missed(x: np.ndarray, truth: float, alpha: float, N: int | None) -> np.ndarray:
    """The two-sided betting sequence (each side alpha/2) ever excludes `truth` (x's mean) exactly when
    one side's capital at the truth crosses 2/alpha at some t (the capital is monotone in m)."""
    crit = math.log(2 / alpha)
    low = betting_log_capital(x, truth, alpha=alpha / 2, population=N) >= crit
    high = betting_log_capital(1 - x, 1 - truth, alpha=alpha / 2, population=N) >= crit
    return (low | high).any(axis=-1)


@pytest.mark.parametrize("p_win,p_loss", [(0.15, 0.05), (0.3, 0.3), (0.02, 0.0)])
def test_betting_time_uniform_coverage_iid(p_win, p_loss):
    reps, T, alpha = 2000, 400, 0.1
    u = np.random.default_rng(12).random((reps, T))
    x = ((u < p_win).astype(float) - ((u >= p_win) & (u < p_win + p_loss)) + 1) / 2
    truth = (p_win - p_loss + 1) / 2
    assert _betting_ever_missed(x, truth, alpha, None).mean() <= _mc_bound(alpha, reps)


@pytest.mark.parametrize("n_win,n_loss,N", [(60, 20, 300), (90, 90, 300), (5, 0, 200)])
def test_betting_time_uniform_coverage_without_replacement(n_win, n_loss, N):
    reps, alpha = 2000, 0.1
    pool = np.array([1.0] * n_win + [-1.0] * n_loss + [0.0] * (N - n_win - n_loss))
    rng = np.random.default_rng(6)
    x = (np.array([rng.permutation(pool) for _ in range(reps)]) + 1) / 2
    assert _betting_ever_missed(x, (pool.mean() + 1) / 2, alpha, N).mean() <= _mc_bound(alpha, reps)
    lo, hi = paired_betting_sequence(2 * x[:200] - 1, np.zeros((200, N)), [N // 2, N], alpha=alpha, population=N)
    assert np.median(hi[:, -1] - lo[:, -1]) < 0.01   # at t = N it knows the pool
