"""Decisions from intervals: each cell against the best cell of its task and model.

    decide(-0.24, -0.40, -0.08, margin=0.05)      # 'inferior': the whole interval is below 0
    decide(-0.01, -0.04, 0.02, margin=0.05)       # 'non_inferior': the whole interval is above -margin

The interval is of cell - reference at the level the multiplicity correction gives it
(harness.stats.paired.family_intervals: the Bonferroni level, cut at 0 where Holm rejects). `items_needed` says how many items per cell the interval would
need to decide, if the observed difference and discordance held (see its docstring and
docs/statistics.md). `constant_answer` finds a cell that gives one answer on nearly every item.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

import numpy as np
from scipy.stats import norm

from .paired import score_interval

DECISIONS = ("best", "non_inferior", "inferior", "inconclusive", "constant_answer")
DEFAULT_MARGIN = 0.05  # 5 accuracy points
CONSTANT_SHARE = 0.95  # one answer on at least this share of the items: a constant answer
MAX_ITEMS = 10_000_000  # items_needed above this: reported as not reachable (NaN)


def decide(diff: float, lo: float, hi: float, *, margin: float) -> str:
    """'non_inferior' when the whole interval of cell - reference lies above -margin (this includes a
    cell significantly below the best by less than the margin), else 'inferior' when it lies below 0,
    else 'inconclusive'. NaN bounds: 'inconclusive'."""
    if margin < 0:
        raise ValueError("margin must be >= 0")
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if lo > -margin:
        return "non_inferior"
    if hi < 0:
        return "inferior"
    return "inconclusive"


def _decides_score(n: float, pb: float, pc: float, alpha: float, margin: float) -> bool:
    lo, hi = score_interval(pb * n, pc * n, n, alpha)
    return bool(lo > -margin or hi < 0)


def items_needed(n: int, only_cell: float, only_ref: float, *, alpha: float, margin: float) -> float:
    """Items per cell at which Tango's interval (at level 1 - alpha) of cell - reference would decide
    (lie above -margin, or below 0) if the observed shares of discordant items held:
    P(only the cell right) = only_cell / n, P(only the reference right) = only_ref / n.

    The counts are scaled to N items (b N / n, c N / n, not rounded) and N is the smallest integer at
    which that expected table decides. Sampling noise makes a real study of N items decide about half
    the time (it is the sample size of ~50 % power; checked by simulation in tests/test_decisions.py).
    NaN when no N up to MAX_ITEMS decides (the observed difference sits exactly on -margin or on 0
    with no margin)."""
    if n <= 0:
        return float("nan")
    pb, pc = only_cell / n, only_ref / n
    if pb + pc == 0 and margin == 0:
        return float("nan")
    if _decides_score(n, pb, pc, alpha, margin):
        return float(n)
    hi = float(n)
    while not _decides_score(hi, pb, pc, alpha, margin):
        hi *= 2
        if hi > MAX_ITEMS:
            return float("nan")
    lo = hi / 2
    while hi - lo > 1:  # the expected table's interval shrinks as N grows: bisect on N
        mid = math.floor((lo + hi) / 2)
        if _decides_score(mid, pb, pc, alpha, margin):
            hi = mid
        else:
            lo = mid
    return float(math.ceil(hi))


def items_needed_wald(n_clusters: int, diff: float, se: float, *, alpha: float, margin: float) -> float:
    """Clustered version: clusters per cell at which diff +- z se * sqrt(n / N) would decide."""
    if n_clusters <= 0 or not se > 0 or math.isnan(diff):
        return float("nan")
    z = norm.isf(alpha / 2)
    gaps = [g for g in (diff + margin, -diff) if g > 0]  # distance to -margin (from above), to 0 (from below)
    if not gaps:
        return float("nan")
    return float(math.ceil(n_clusters * (z * se / max(gaps)) ** 2))


def constant_answer(answers: Iterable, *, share: float = CONSTANT_SHARE) -> tuple[str, int, int] | None:
    """(answer, count, items) when one answer (None counts as no answer) is given on >= `share` of
    the items, else None.

    >>> constant_answer(["positive"] * 49 + ["negative"])
    ('positive', 49, 50)
    """
    xs = list(answers)
    if not xs:
        return None
    counts = Counter(str(a) for a in xs if a is not None and not (isinstance(a, float) and np.isnan(a)))
    if not counts:
        return None
    label, k = counts.most_common(1)[0]
    return (label, k, len(xs)) if k >= share * len(xs) else None
