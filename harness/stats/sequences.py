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


def _plugin_bets(x: np.ndarray, log_a: float) -> np.ndarray:
    """The predictable plug-in bet lam_t before truncation (the same formula as in eb_upper)."""
    t = np.arange(1, x.shape[-1] + 1, dtype=float)
    mu = (0.5 + np.cumsum(x, axis=-1)) / (t + 1)
    sigma2 = (0.25 + np.cumsum((x - mu) ** 2, axis=-1)) / (t + 1)
    return np.sqrt(2 * log_a / (_lagged(sigma2, 0.25) * t * np.log1p(t)))


def _capital_terms(x: np.ndarray, lamdot: np.ndarray, s_prev: np.ndarray, m, index: np.ndarray,
                   population: int | None, truncation: float) -> np.ndarray:
    """log(1 + lam_i(m) (X_i - mu_i(m))) for every item i; `index` holds i (1-based), shaped to
    broadcast like `x`."""
    if population is None:
        mu = m + np.zeros_like(x)
    else:
        N = float(population)
        mu = (N * m - s_prev) / (N - index + 1)
    mu = np.clip(mu, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        lam = np.minimum(lamdot, truncation / mu)
    return np.log1p(lam * (x - mu))


def betting_log_capital(x, m: float, *, alpha: float, population: int | None = None,
                        truncation: float = TRUNCATION) -> np.ndarray:
    """log K_t(m) for every t: the capital of Waudby-Smith & Ramdas (2024), Section 4 (the positive
    half of their hedged capital), betting that the mean of X in [0, 1] exceeds m, with the
    predictable plug-in bet truncated at c/m:
        K_t(m) = prod_{i<=t} (1 + lam_i(m) (X_i - mu_i(m))),   lam_i(m) = min(lamdot_i, c / mu_i(m)),
    mu_i(m) = m (i.i.d.) or (N m - S_{i-1}) / (N - i + 1) (without replacement), lamdot the plug-in bet
    of eb_upper at level `alpha`. When m is the mean, K is a nonnegative martingale, so by Ville's
    inequality P(exists t: K_t(mean) >= 1/alpha) <= alpha: a crossing rejects m (and every smaller m:
    K_t is decreasing in m). Without replacement, a mean the data already rule out (N m < S_t) is
    rejected outright (log K = +inf)."""
    x = _as_unit(x)
    lamdot = _plugin_bets(x, np.log(1.0 / alpha))
    S = np.cumsum(x, axis=-1)
    index = np.arange(1, x.shape[-1] + 1, dtype=float)
    logk = np.cumsum(_capital_terms(x, lamdot, S - x, float(m), index, population, truncation), axis=-1)
    if population is not None:
        logk = np.where(float(population) * m < S - 1e-9, np.inf, logk)
    return logk


def betting_lower(x, ends, *, alpha: float, population: int | None = None, truncation: float = TRUNCATION,
                  iterations: int = 14) -> np.ndarray:
    """One-sided betting lower confidence bounds for the mean of X in [0, 1] at the times `ends`: the
    largest m that `betting_log_capital` rejects at t, found by bisection (the value returned lies
    at most 2**-iterations below the exact boundary: conservative). Returns shape
    x.shape[:-1] + (len(ends),), not intersected over time."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    x = _as_unit(x)
    ends = [int(e) for e in ends]
    T = x.shape[-1]
    if not ends or min(ends) < 1 or max(ends) > T:
        raise ValueError(f"ends must lie in 1..{T}")
    if population is not None and T > int(population):
        raise ValueError(f"{T} observations drawn without replacement from a pool of {population}")
    crit = np.log(1.0 / alpha)
    lamdot = _plugin_bets(x, crit)
    S = np.cumsum(x, axis=-1)
    out = np.empty(x.shape[:-1] + (len(ends),))
    for k, t in enumerate(ends):
        xs, lam_t, sp = x[..., :t, None], lamdot[..., :t, None], (S - x)[..., :t, None]
        index = np.arange(1, t + 1, dtype=float)[:, None]
        if population is None:
            lo, hi = np.zeros(x.shape[:-1]), np.ones(x.shape[:-1])
        else:
            lo, hi = S[..., t - 1] / population, (S[..., t - 1] + population - t) / population  # feasible
        lo = lo - 1e-12  # the bracket's rejected end
        for _ in range(iterations):
            mid = (lo + hi) / 2
            logk = _capital_terms(xs, lam_t, sp, mid[..., None, None], index, population,
                                  truncation).sum(axis=-2)[..., 0]
            rejected = logk >= crit
            lo, hi = np.where(rejected, mid, lo), np.where(rejected, hi, mid)
        out[..., k] = np.maximum(lo, 0.0)
    return out


def paired_betting_sequence(a, b, ends, *, alpha: float = 0.05, population: int | None = None,
                            running_intersection: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The betting confidence sequence for mean(a) - mean(b) at the times `ends` (each side at
    alpha/2, in accuracy units, intersected over the given ends). Tighter than the empirical-Bernstein
    one early on and when few items are discordant; computed by bisection, so only at `ends`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("a and b must have the same shape (paired items)")
    x = (a - b + 1.0) / 2.0
    lower = betting_lower(x, ends, alpha=alpha / 2, population=population)
    upper = 1.0 - betting_lower(1.0 - x, ends, alpha=alpha / 2, population=population)
    if running_intersection:
        lower, upper = np.maximum.accumulate(lower, axis=-1), np.minimum.accumulate(upper, axis=-1)
    return 2.0 * lower - 1.0, 2.0 * upper - 1.0


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
