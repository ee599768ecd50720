"""The paired difference of two proportions: Tango's score test and the interval that inverts it.

Two strategies answer the same n items. With b = items only A got right and c = items only B got right,
the difference of accuracies is d = (b - c) / n. Tango's (1998) score statistic for H0: delta = delta0,

    Z(delta0) = (b - c - n delta0) / sqrt(n (2 q + delta0 (1 - delta0)))

where q is the maximum-likelihood estimate of P(only B right) under H0 (closed form below). The
interval is {delta0 : |Z(delta0)| < z_(1 - alpha/2)}, so it excludes 0 exactly when the test of
delta0 = 0 rejects at alpha: the two are one method. At delta0 = 0, Z = (b - c) / sqrt(b + c), the
McNemar statistic without continuity correction. Everything depends only on (n, b, c) and is
vectorised over arrays of them.

>>> round(score_p_value(12, 4), 4)
0.0455
>>> [round(x, 4) for x in score_interval(12, 4, 50)]
[0.0035, 0.315]
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

BISECTION_STEPS = 60  # the interval ends to 2**-60 of the search range


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def constrained_q(b, c, n, delta):
    """The MLE of P(only B right) when A - B = delta (Tango 1998, eq. 3); vectorised."""
    b, c, n, delta = map(_arr, (b, c, n, delta))
    a2 = 2.0 * n
    bb = -b - c + (2.0 * n - b + c) * delta
    cc = -c * delta * (1.0 - delta)
    disc = np.maximum(bb * bb - 4.0 * a2 * cc, 0.0)
    return (np.sqrt(disc) - bb) / (2.0 * a2)


def score_z(b, c, n, delta):
    """Tango's score statistic Z(delta) (decreasing in delta); NaN where its variance is 0."""
    b, c, n, delta = map(_arr, (b, c, n, delta))
    q = constrained_q(b, c, n, delta)
    var = n * (2.0 * q + delta * (1.0 - delta))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, (b - c - n * delta) / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)


def score_p_value(b, c):
    """Two-sided p of the score test of no difference: McNemar without continuity correction.
    No discordant item: p = 1."""
    b, c = _arr(b), _arr(c)
    s = b + c
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(s > 0, (b - c) / np.sqrt(np.where(s > 0, s, 1.0)), 0.0)
    p = 2.0 * norm.sf(np.abs(z))
    return float(p) if p.ndim == 0 else p


def score_interval(b, c, n, alpha=0.05):
    """Tango's score interval (lo, hi) for A - B at level 1 - alpha, by bisection on Z (vectorised
    over b, c, n and alpha). Where the test of 0 rejects at alpha (p < alpha) the interval excludes 0,
    and where it does not, the interval contains 0 (enforced, so rounding at the boundary cannot break it)."""
    b, c, n, alpha = np.broadcast_arrays(*map(_arr, (b, c, n, alpha)))
    zc = norm.isf(alpha / 2.0)
    d = np.where(n > 0, (b - c) / np.where(n > 0, n, 1.0), np.nan)

    def root(lo, hi, target):  # Z is decreasing: find the delta where Z crosses target in [lo, hi]
        lo, hi = lo.copy(), hi.copy()
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2.0
            z = score_z(b, c, n, mid)
            z = np.where(np.isnan(z), 0.0, z)
            above = z > target
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        return (lo + hi) / 2.0

    lower = root(np.full_like(d, -1.0), d, zc)
    upper = root(d, np.full_like(d, 1.0), -zc)
    reject = score_p_value(b, c) < alpha
    lower = np.where(reject, lower, np.minimum(lower, 0.0))
    upper = np.where(reject, upper, np.maximum(upper, 0.0))
    # rejected: 0 lies outside; pull a boundary that rounding put on 0 just past it
    tiny = np.finfo(float).eps
    lower = np.where(reject & (d > 0) & (lower <= 0), tiny, lower)
    upper = np.where(reject & (d < 0) & (upper >= 0), -tiny, upper)
    lower, upper = np.where(n > 0, lower, np.nan), np.where(n > 0, upper, np.nan)
    if lower.ndim == 0:
        return float(lower), float(upper)
    return lower, upper


def holm_adjust(p) -> np.ndarray:
    """Holm-adjusted p-values (NaN stays NaN and is not counted); equals statsmodels' multipletests."""
    p = _arr(p)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        m = order.size
        adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
        out[order] = np.maximum.accumulate(adj)
    return out


def family_intervals(b, c, n, *, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """The intervals of a family of m paired comparisons (one per row of b, c, n; n = 0 rows are not
    tested): each is Tango's interval at the Bonferroni level 1 - alpha / m, so together they cover
    all m differences with probability >= 1 - alpha; p_holm is Holm over the m score-test p-values.
    Holm rejects everything Bonferroni rejects and sometimes more: where Holm rejects a pair whose
    Bonferroni interval still holds 0, the interval is cut at 0 on the side the data are not on
    (the Holm-compatible truncation), so that every interval excludes 0 exactly when p_holm < alpha.

    Returns arrays: diff, ci_low, ci_high, level (1 - alpha / m), p (raw), p_holm, truncated (bool)."""
    b, c, n = np.broadcast_arrays(*(np.atleast_1d(_arr(x)) for x in (b, c, n)))
    tested = n > 0
    m = int(tested.sum())
    p = np.where(tested, score_p_value(b, c), np.nan)
    p_holm = holm_adjust(p)
    alpha_m = alpha / max(m, 1)
    lo, hi = score_interval(b, c, np.where(tested, n, 0), alpha_m)
    d = np.where(tested, (b - c) / np.where(tested, n, 1), np.nan)
    lo, hi, cut = holm_cut(d, lo, hi, p_holm, alpha=alpha)
    return {"diff": d, "ci_low": lo, "ci_high": hi, "level": np.where(tested, 1 - alpha_m, np.nan),
            "p": p, "p_holm": p_holm, "truncated": cut}


def holm_cut(diff, lo, hi, p_holm, *, alpha: float = 0.05):
    """Cut at 0 the Bonferroni-level intervals whose pair Holm rejects while they still hold 0 (on the
    side away from the estimate), so that each interval excludes 0 exactly when p_holm < alpha.
    Returns (lo, hi, cut)."""
    diff, lo, hi, p_holm = (np.atleast_1d(_arr(x)).copy() for x in (diff, lo, hi, p_holm))
    cut = (p_holm < alpha) & (lo <= 0) & (hi >= 0)
    tiny = np.finfo(float).eps
    lo = np.where(cut & (diff > 0), tiny, lo)
    hi = np.where(cut & (diff < 0), -tiny, hi)
    return lo, hi, cut


def table_counts(a, b) -> tuple[int, int, int]:
    """(n, only_a, only_b) of two paired 0/1 vectors."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("a and b must have the same length (paired items)")
    return int(a.size), int((a & ~b).sum()), int((~a & b).sum())
