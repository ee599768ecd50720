"""Judge statistics: how good a model judge is against gold labels, and the accuracy corrected for it.

A judge that says "pass" with sensitivity q1 = P(pass | truly correct) and specificity
q0 = P(fail | truly wrong) reports a pass rate p whose expectation is θ q1 + (1 − θ)(1 − q0). The
bias-corrected accuracy inverts that (Lee et al., "How to Correctly Report LLM-as-a-Judge Evaluations",
arXiv 2511.21140; their code: UW-Madison-Lee-Lab/LLM-judge-reporting, `point_estimator` and
`confidence_interval`):

    θ̂ = clip((p + q0 − 1) / (q0 + q1 − 1), 0, 1)

Its interval is the paper's plug-in interval: p, q0, q1 smoothed (p by z²/2 successes out of z² extra
trials, q0 and q1 by 1 of 2), then θ̃ from the smoothed values, a second-order shift

    dθ = 2 z² (−(1 − θ̃) q̃0 (1 − q̃0) / m̃0 + θ̃ q̃1 (1 − q̃1) / m̃1)

and a delta-method standard error that counts the test set (n) and both calibration classes (m0, m1):

    se = sqrt(p̃(1 − p̃)/ñ + (1 − θ̃)² q̃0(1 − q̃0)/m̃0 + θ̃² q̃1(1 − q̃1)/m̃1) / (q̃0 + q̃1 − 1)

    interval = clip(θ̃ + dθ ∓ z se, 0, 1),   ñ = n + z², m̃0 = m0 + 2, m̃1 = m1 + 2.

>>> round(point_estimate(0.4, 0.7, 0.9), 4)
0.1667
>>> [round(x, 4) for x in confidence_interval(0.4, 0.7, 0.9, n=1000, m0=200, m1=200)]
[0.0564, 0.2627]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def _z(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))


def _clip(x: float) -> float:
    return max(0.0, min(1.0, x))


def _check(p: float, q0: float, q1: float) -> None:
    for name, v in (("p", p), ("q0", q0), ("q1", q1)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} = {v} is not a proportion in [0, 1]")
    if q0 + q1 <= 1.0:
        raise ValueError(f"q0 + q1 = {q0 + q1:g} <= 1: the judge is no better than chance, so its pass rate "
                         "cannot be corrected")


def point_estimate(p: float, q0: float, q1: float) -> float:
    """θ̂ = clip((p + q0 − 1) / (q0 + q1 − 1)); needs q0 + q1 > 1 (ValueError otherwise)."""
    _check(p, q0, q1)
    return _clip((p + q0 - 1) / (q0 + q1 - 1))


def confidence_interval(p: float, q0: float, q1: float, *, n: int, m0: int, m1: int,
                        alpha: float = 0.05) -> tuple[float, float]:
    """The paper's plug-in (1 − alpha) interval for θ (see the module docstring). `n`: test items the
    judge scored (p is their pass rate); `m0` / `m1`: truly wrong / truly correct calibration items
    (q0 / q1 were measured on them)."""
    _check(p, q0, q1)
    if min(n, m0, m1) < 1:
        raise ValueError(f"n, m0 and m1 must be >= 1 (got {n}, {m0}, {m1})")
    z = _z(alpha)
    z2 = z * z
    ps = (n * p + z2 / 2) / (n + z2)
    q0s = (m0 * q0 + 1) / (m0 + 2)
    q1s = (m1 * q1 + 1) / (m1 + 2)
    ns, m0s, m1s = n + z2, m0 + 2, m1 + 2
    denom = q0s + q1s - 1  # > 0: smoothing moves q0, q1 towards 1/2, and q0 + q1 > 1 stays > 1
    th = (ps + q0s - 1) / denom
    dth = 2 * z2 * (-(1 - th) * q0s * (1 - q0s) / m0s + th * q1s * (1 - q1s) / m1s)
    se = math.sqrt(ps * (1 - ps) / ns + (1 - th) ** 2 * q0s * (1 - q0s) / m0s
                   + th ** 2 * q1s * (1 - q1s) / m1s) / denom
    return _clip(th + dth - z * se), _clip(th + dth + z * se)


@dataclass(frozen=True)
class JudgeQuality:
    """The judge against gold labels: counts, q0, q1, Cohen's κ, each with a (1 − alpha) interval."""

    n: int
    m0: int  # truly wrong items
    m1: int  # truly correct items
    tp: int
    fp: int
    tn: int
    fn: int
    q0: float | None  # specificity: P(judge fails | wrong)
    q0_ci: tuple[float, float] | None
    q1: float | None  # sensitivity: P(judge passes | correct)
    q1_ci: tuple[float, float] | None
    kappa: float | None
    kappa_ci: tuple[float, float] | None
    agreement: float | None

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        for k in ("q0_ci", "q1_ci", "kappa_ci"):
            lo, hi = d.pop(k) or (None, None)
            d[f"{k[:-3]}_low"], d[f"{k[:-3]}_high"] = lo, hi
        return d


def judge_quality(judge: Sequence[bool], gold: Sequence[bool], *, alpha: float = 0.05) -> JudgeQuality:
    """q0, q1 (Wilson intervals, statsmodels) and Cohen's κ (asymptotic interval, statsmodels'
    cohens_kappa's standard error) of a judge's pass/fail against gold correct/wrong, item by item."""
    from statsmodels.stats.inter_rater import cohens_kappa
    from statsmodels.stats.proportion import proportion_confint

    j = np.asarray(judge, dtype=bool)
    g = np.asarray(gold, dtype=bool)
    if j.shape != g.shape:
        raise ValueError(f"judge and gold differ in length ({j.size} vs {g.size})")
    tp, fn = int((j & g).sum()), int((~j & g).sum())
    fp, tn = int((j & ~g).sum()), int((~j & ~g).sum())
    m1, m0 = tp + fn, tn + fp

    def rate(k: int, m: int):
        if m == 0:
            return None, None
        lo, hi = proportion_confint(k, m, alpha=alpha, method="wilson")
        return k / m, (float(lo), float(hi))

    q0, q0_ci = rate(tn, m0)
    q1, q1_ci = rate(tp, m1)
    kappa = kappa_ci = None
    n = int(j.size)
    if n:
        table = np.array([[tn, fp], [fn, tp]], dtype=float)  # rows: gold wrong/correct; columns: judge fail/pass
        pe = ((tn + fp) * (tn + fn) + (fn + tp) * (fp + tp)) / n ** 2
        if pe < 1:  # κ is undefined when both raters give one label only
            with np.errstate(invalid="ignore", divide="ignore"):  # a one-label rater: no variance
                res = cohens_kappa(table, return_results=True)  # Fleiss-Cohen-Everitt large-sample variance
            kappa, half = float(res.kappa), _z(alpha) * float(res.std_kappa)
            kappa_ci = (kappa - half, kappa + half) if math.isfinite(half) else None
    return JudgeQuality(n=n, m0=m0, m1=m1, tp=tp, fp=fp, tn=tn, fn=fn, q0=q0, q0_ci=q0_ci, q1=q1, q1_ci=q1_ci,
                        kappa=kappa, kappa_ci=kappa_ci, agreement=(tp + tn) / n if n else None)


def corrected_accuracy(test_pass: Sequence[bool], calib_judge: Sequence[bool], calib_gold: Sequence[bool], *,
                       alpha: float = 0.05) -> dict:
    """The judge's raw pass rate p on the test items, and θ̂ with the plug-in interval, q0 and q1 measured
    on the calibration items (judge verdict and gold label, item by item). θ̂ is None when the
    calibration set lacks a class or the judge is no better than chance there (q0 + q1 <= 1)."""
    t = np.asarray(test_pass, dtype=bool)
    q = judge_quality(calib_judge, calib_gold, alpha=alpha)
    out = {"n_test": int(t.size), "p_raw": float(t.mean()) if t.size else None, "m0": q.m0, "m1": q.m1,
           "q0": q.q0, "q1": q.q1, "theta": None, "theta_low": None, "theta_high": None, "theta_note": None}
    if not t.size or q.q0 is None or q.q1 is None:
        out["theta_note"] = "no test items" if not t.size else "the calibration set lacks a class"
        return out
    if q.q0 + q.q1 <= 1:
        out["theta_note"] = f"q0 + q1 = {q.q0 + q.q1:.3f} ≤ 1: the judge is no better than chance"
        return out
    out["theta"] = point_estimate(out["p_raw"], q.q0, q.q1)
    out["theta_low"], out["theta_high"] = confidence_interval(out["p_raw"], q.q0, q.q1, n=int(t.size), m0=q.m0,
                                                              m1=q.m1, alpha=alpha)
    return out


def coverage(*, theta: float, q0: float, q1: float, n: int, m0: int, m1: int, runs: int, alpha: float = 0.05,
             seed: int = 0) -> dict:
    """Monte Carlo coverage of the plug-in interval: each run draws a test set of n items (true accuracy
    θ, judge with q0 / q1) and a calibration set of m0 wrong and m1 correct items, and checks whether
    the interval holds θ. Returns the share of runs that did, its Wilson interval, and the mean width."""
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(seed)
    p_true = theta * q1 + (1 - theta) * (1 - q0)
    hits, widths, skipped = 0, [], 0
    for _ in range(runs):
        p = rng.binomial(n, p_true) / n
        q0h = rng.binomial(m0, q0) / m0
        q1h = rng.binomial(m1, q1) / m1
        if q0h + q1h <= 1:
            skipped += 1
            continue
        lo, hi = confidence_interval(p, q0h, q1h, n=n, m0=m0, m1=m1, alpha=alpha)
        hits += lo <= theta <= hi
        widths.append(hi - lo)
    done = runs - skipped
    lo, hi = proportion_confint(hits, done, alpha=0.05, method="wilson") if done else (None, None)
    return {"runs": done, "skipped": skipped, "coverage": hits / done if done else None,
            "coverage_low": lo, "coverage_high": hi, "mean_width": float(np.mean(widths)) if widths else None}


def flip_rate(flipped: Sequence[bool], *, alpha: float = 0.05) -> dict:
    """Share of pairwise items whose preference changed when the two outputs swapped places (Wilson CI)."""
    from statsmodels.stats.proportion import proportion_confint

    f = np.asarray(flipped, dtype=bool)
    if not f.size:
        return {"n": 0, "flip_rate": None, "flip_low": None, "flip_high": None}
    lo, hi = proportion_confint(int(f.sum()), f.size, alpha=alpha, method="wilson")
    return {"n": int(f.size), "flip_rate": float(f.mean()), "flip_low": float(lo), "flip_high": float(hi)}


def preference_test(outcomes: Sequence[str]) -> dict:
    """Pairwise outcomes ("A", "B", "tie") -> wins, losses, ties, A's win rate over decided items and
    the two-sided exact sign test (scipy's binomtest, ties dropped) of "A and B are preferred equally"."""
    from scipy.stats import binomtest

    o = list(outcomes)
    a, b, t = o.count("A"), o.count("B"), o.count("tie")
    out = {"n": len(o), "a_wins": a, "b_wins": b, "ties": t, "a_win_rate": a / (a + b) if a + b else None,
           "p_value": None}
    if a + b:
        out["p_value"] = float(binomtest(a, a + b, 0.5).pvalue)
    return out


GROUP = ["task", "strategy", "model"]


def calibration_half(example_ids, share: float = 0.5) -> np.ndarray:
    """A fixed split of items into calibration (True) and test (False): the first byte of the sha256 of
    the item id, so the same item is on the same side in every run and every strategy."""
    import hashlib

    return np.array([hashlib.sha256(str(i).encode()).digest()[0] < 256 * share for i in example_ids], dtype=bool)


def quality_table(preds, *, alpha: float = 0.05, share: float = 0.5):
    """One row per task x strategy x model whose rows carry both the judge's pass (`correct`) and a
    rule's (`rule_correct`): the judge's q0, q1 and κ against the rule on every judged item, and θ̂ with
    the plug-in interval where q0 and q1 come from the calibration half of the items
    (`calibration_half`) and p from the other half, next to the rule's accuracy on that same test half
    (what θ̂ estimates). Rows without a verdict (no_majority, errors) are left out and counted."""
    import pandas as pd

    if preds.empty or "rule_correct" not in preds or "judge_verdict" not in preds:
        return pd.DataFrame()
    rows = []
    for key, g in preds.groupby(GROUP, sort=True, dropna=False):
        g = g[g["rule_correct"].notna()]
        decided = g[g["judge_verdict"].isin(["pass", "fail"])]
        if g.empty:
            continue
        judge = (decided["judge_verdict"] == "pass").to_numpy()
        rule = decided["rule_correct"].astype(bool).to_numpy()
        q = judge_quality(judge, rule, alpha=alpha)
        row = {**dict(zip(GROUP, key)), "judged": len(decided), "undecided": len(g) - len(decided),
               "rule_accuracy": float(rule.mean()) if rule.size else None,
               "judge_pass_rate": float(judge.mean()) if judge.size else None, **q.as_dict()}
        cal = calibration_half(decided["example_id"], share)
        c = corrected_accuracy(judge[~cal], judge[cal], rule[cal], alpha=alpha)
        row.update({"calibration_items": int(cal.sum()), "test_items": c["n_test"], "test_p_raw": c["p_raw"],
                    "test_rule_accuracy": float(rule[~cal].mean()) if (~cal).any() else None,
                    "theta": c["theta"], "theta_low": c["theta_low"], "theta_high": c["theta_high"],
                    "theta_note": c["theta_note"]})
        rows.append(row)
    return pd.DataFrame(rows)
