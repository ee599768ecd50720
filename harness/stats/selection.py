"""What selection on a validation split costs, and how the selected prompt compares on test
(harness optimize, docs/optimize.md).

Picking the best of m candidates on n val items inflates the picked one's val accuracy even when all are
equal. Under that null (m independent Binomial(n, p) counts), the expected inflation is

    E[max_j X_j / n] - p,   P(max <= k) = F(k)^m,   F = the Binomial(n, p) CDF,

summed exactly over k = 0..n (no simulation). Candidates that share val items are correlated, which
lowers the real inflation: the independent figure is the reference a user reads the observed gap against.

>>> round(100 * expected_inflation(16, 100, 0.5), 1)
8.8
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom

from .decisions import decide, items_needed
from .paired import score_interval, score_p_value


def expected_max_share(m: int, n: int, p: float) -> float:
    """E[max of m independent Binomial(n, p)] / n, exactly."""
    if m < 1 or n < 1 or not 0 <= p <= 1:
        raise ValueError("need m >= 1 candidates, n >= 1 items and 0 <= p <= 1")
    k = np.arange(n + 1)
    cdf_m = binom.cdf(k, n, p) ** m
    pmf_max = np.diff(np.concatenate([[0.0], cdf_m]))
    return float((k * pmf_max).sum() / n)


def expected_inflation(m: int, n: int, p: float) -> float:
    """The expected val-best inflation (share of items) of m equal candidates of accuracy p on n items."""
    return expected_max_share(m, n, p) - p


def gap_interval(val_correct: int, val_n: int, test_correct: int, test_n: int, *,
                 alpha: float = 0.05) -> tuple[float, float, float]:
    """(val - test accuracy, lo, hi): Newcombe's hybrid score interval for the difference of two independent
    proportions (val and test are disjoint item sets), via statsmodels."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    if val_n < 1 or test_n < 1:
        return float("nan"), float("nan"), float("nan")
    lo, hi = confint_proportions_2indep(val_correct, val_n, test_correct, test_n, method="newcomb",
                                        compare="diff", alpha=alpha)
    return val_correct / val_n - test_correct / test_n, float(lo), float(hi)


def compare_on_test(winner, baseline, *, margin: float, alpha: float = 0.05) -> dict:
    """The paired test comparison of the winner with the baseline (0/1 per item, the same items), with
    the verdicts' rules (harness/stats/decisions.py): the higher test accuracy is `best` (the winner on a
    tie), the other is decided against it from Tango's interval: non_inferior, inferior or inconclusive.
    `diff`, `ci_low`, `ci_high` are of winner - baseline."""
    w, b = np.asarray(winner, dtype=bool), np.asarray(baseline, dtype=bool)
    if w.shape != b.shape:
        raise ValueError("winner and baseline must answer the same items")
    n, only_w, only_b = int(w.size), int((w & ~b).sum()), int((~w & b).sum())
    if n == 0:
        return {"n": 0, "diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan,
                "best": "winner", "other": "baseline", "decision": "inconclusive", "items_needed": math.nan}
    lo, hi = score_interval(only_w, only_b, n, alpha)
    diff = (only_w - only_b) / n
    winner_best = diff >= 0
    # the other cell minus the best one: the decisions' orientation
    o_diff, o_lo, o_hi = (-diff, -hi, -lo) if winner_best else (diff, lo, hi)
    decision = decide(o_diff, o_lo, o_hi, margin=margin)
    only_other, only_best = (only_b, only_w) if winner_best else (only_w, only_b)
    need = items_needed(n, only_other, only_best, alpha=alpha, margin=margin) if decision == "inconclusive" else n
    return {"n": n, "acc_winner": float(w.mean()), "acc_baseline": float(b.mean()), "only_winner": only_w,
            "only_baseline": only_b, "diff": diff, "ci_low": float(lo), "ci_high": float(hi),
            "p": float(score_p_value(only_w, only_b)), "best": "winner" if winner_best else "baseline",
            "other": "baseline" if winner_best else "winner", "decision": decision, "items_needed": need}
