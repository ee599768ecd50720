"""Anytime-valid confidence sequences for a paired difference in accuracy.

Two cells answer the same items in one order; item i gives the paired difference
D_i = correct_a(i) - correct_b(i) in {-1, 0, 1}. A *confidence sequence* (C_t) for the mean difference
Delta satisfies P(Delta in C_t for every t >= 1) >= 1 - alpha: it may be looked at after every item,
and a race may stop whenever it likes, without inflating its error (a fixed-n interval looked at after
every batch does not have this property: `fixed_n_interval` is here only to show that).

The sequence is the *predictable plug-in empirical-Bernstein* (PrPl-EB) confidence sequence of
Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting", JRSS-B 86(1), 2024
(arXiv 2010.09686), Theorem 2, for observations X_i in [0, 1] (here X_i = (D_i + 1) / 2):

    C_t = ( sum_i lam_i X_i / sum_i lam_i )  +-  ( log(2/alpha) + sum_i v_i psi_E(lam_i) ) / sum_i lam_i

    v_i      = 4 (X_i - mu_{i-1})^2,        psi_E(lam) = (-log(1 - lam) - lam) / 4
    lam_t    = min( sqrt( 2 log(2/alpha) / (sigma2_{t-1} t log(1 + t)) ), c ),   c = 1/2
    mu_t     = (1/2 + sum_{i<=t} X_i) / (t + 1),     sigma2_t = (1/4 + sum_{i<=t} (X_i - mu_i)^2) / (t + 1)

(the paper's predictable plug-in bet that follows the theorem; mu_0 = 1/2, sigma2_0 = 1/4).
Each side is the boundary of the nonnegative supermartingale
prod_i exp(lam_i (X_i - m) - v_i psi_E(lam_i)) at level alpha/2 (Ville's inequality), so the two
sides may also be used separately, each with error alpha/2.

Items drawn **without replacement** from a finite pool of N items (a race over a task's N items,
whose target is the difference the full run would measure) use the paper's sampling-without-
replacement version: the
conditional mean of the next draw is mu_t^WoR(m) = (N m - sum_{i<t} X_i) / (N - t + 1), which makes
the bound linear in m again:

    C_t = ( sum_i lam_i (X_i + S_{i-1}/(N-i+1)) +- R_t ) / sum_i lam_i N/(N-i+1)

with R_t the same numerator as above. It shrinks to the pool's exact difference as t -> N. Both are
checked against a brute-force evaluation of the supermartingale and by Monte Carlo (time-uniform
coverage) in tests/test_sequences.py.

>>> lo, hi = paired_confidence_sequence([1] * 200, [0] * 200)
>>> bool(lo[-1] > 0.8)
True
"""
from __future__ import annotations

import numpy as np
from scipy import stats

TRUNCATION = 0.5  # c in the paper: bets at most 1/2 (their recommended default)


def _as_unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError("need at least one observation (the last axis is time)")
    if np.isnan(x).any() or (x < 0).any() or (x > 1).any():
        raise ValueError("observations must lie in [0, 1]")
    return x


def _lagged(a: np.ndarray, first: float) -> np.ndarray:
    """a_{t-1} along the last axis, with a_0 = first."""
    out = np.empty_like(a)
    out[..., 0] = first
    out[..., 1:] = a[..., :-1]
    return out


def eb_upper(x, *, alpha: float, population: int | None = None,
             truncation: float = TRUNCATION) -> np.ndarray:
    """One-sided PrPl-EB upper confidence sequence for the mean of X in [0, 1], error `alpha`.

    `x` has time on its last axis (other axes: independent sequences). Returns u_t for every t,
    not intersected, not clipped: P(mean <= u_t for all t) >= 1 - alpha. With `population` = N the
    target is the mean of a finite pool of N values sampled without replacement (t <= N)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    x = _as_unit(x)
    T = x.shape[-1]
    t = np.arange(1, T + 1, dtype=float)
    S = np.cumsum(x, axis=-1)
    mu = (0.5 + S) / (t + 1)                                   # mu_t
    sigma2 = (0.25 + np.cumsum((x - mu) ** 2, axis=-1)) / (t + 1)  # sigma2_t
    log_a = np.log(1.0 / alpha)
    lam = np.minimum(np.sqrt(2 * log_a / (_lagged(sigma2, 0.25) * t * np.log1p(t))), truncation)
    v = 4 * (x - _lagged(mu, 0.5)) ** 2
    psi = (-np.log1p(-lam) - lam) / 4
    if population is None:
        shift, weight = 0.0, 1.0
    else:
        N = int(population)
        if T > N:
            raise ValueError(f"{T} observations drawn without replacement from a pool of {N}")
        left = N - t + 1
        shift, weight = (S - x) / left, N / left
    A = np.cumsum(lam * (x + shift), axis=-1)
    B = np.cumsum(lam * weight, axis=-1)
    R = log_a + np.cumsum(v * psi, axis=-1)
    return (A + R) / B


def confidence_sequence(x, *, alpha: float = 0.05, population: int | None = None,
                        running_intersection: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided PrPl-EB confidence sequence (lower, upper) for the mean of X in [0, 1]: each side
    at alpha/2, clipped to [0, 1], and intersected over time (still valid: the intersection of sets
    that all contain the mean contains it)."""
    x = _as_unit(x)
    upper = np.minimum(eb_upper(x, alpha=alpha / 2, population=population), 1.0)
    lower = np.maximum(1.0 - eb_upper(1.0 - x, alpha=alpha / 2, population=population), 0.0)
    if running_intersection:
        upper = np.minimum.accumulate(upper, axis=-1)
        lower = np.maximum.accumulate(lower, axis=-1)
    return lower, upper


def paired_confidence_sequence(a, b, *, alpha: float = 0.05, population: int | None = None,
                               running_intersection: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Confidence sequence for mean(a) - mean(b) over paired 0/1 outcomes (time on the last axis).

    Returns (lower, upper) in accuracy units ([-1, 1]); each side has error alpha/2, uniformly
    over time. `population` = N: the target is the difference on the finite pool of N items the
    order is drawn from (the full run's difference); None: items are i.i.d. draws (a superpopulation)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("a and b must have the same shape (paired items)")
    lo, hi = confidence_sequence((a - b + 1.0) / 2.0, alpha=alpha, population=population,
                                 running_intersection=running_intersection)
    return 2.0 * lo - 1.0, 2.0 * hi - 1.0


def fixed_n_interval(a, b, *, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """NOT anytime-valid: the paired Wald interval mean(d) +- z_{1-alpha/2} sd(d)/sqrt(t) that a
    fixed-n analysis would report, recomputed at every t. Its coverage at one pre-set t is about
    1 - alpha; looked at after every batch it misses far more often (the race's "naive" mode)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    t = np.arange(1, d.shape[-1] + 1, dtype=float)
    mean = np.cumsum(d, axis=-1) / t
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (np.cumsum(d * d, axis=-1) - t * mean ** 2) / (t - 1)
        half = stats.norm.ppf(1 - alpha / 2) * np.sqrt(np.maximum(var, 0.0) / t)
    half = np.where(t > 1, half, np.inf)
    return np.maximum(mean - half, -1.0), np.minimum(mean + half, 1.0)
