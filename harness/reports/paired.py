"""Paired comparisons of strategies on the same items: exact McNemar, a paired bootstrap CI of the
accuracy difference, Holm's correction, and the Pareto frontier of cost vs accuracy.

Pure functions over arrays and the predictions table. The tests check them against scipy and
statsmodels (tests/test_report.py).

>>> mcnemar_exact([True, True, False, True], [False, True, False, False])
0.5
>>> pareto_front([(10, 0.5), (20, 0.7), (30, 0.6), (5, 0.2)])
[3, 0, 1]
"""
from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd

PAIR_COLUMNS = ["task", "model", "strategy_a", "strategy_b", "n", "acc_a", "acc_b", "diff", "ci_low", "ci_high",
                "p_mcnemar", "p_holm", "holm_family"]
# Holm families: which comparisons are corrected together (always within one task)
FAMILIES = {
    "all": "all pairs of strategies of the task",
    "same_strategy": "the same strategy across runs, per task",
}


def base_strategy(label: str) -> str:
    """'cot@run-2' -> 'cot' (the report tells apart one strategy from several runs as strategy@run_id)."""
    return str(label).rsplit("@", 1)[0]


def _bools(x) -> np.ndarray:
    return np.asarray(x, dtype=bool)


def mcnemar_exact(a, b) -> float:
    """Two-sided exact McNemar p-value for paired correctness vectors `a` and `b` (statsmodels).

    Equals a two-sided binomial test of the a-only successes among the discordant pairs, p = 0.5.
    No discordant pairs gives p = 1; no pairs at all gives NaN."""
    a, b = _bools(a), _bools(b)
    if a.shape != b.shape:
        raise ValueError("a and b must have the same length (paired items)")
    if a.size == 0:
        return float("nan")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    from statsmodels.stats.contingency_tables import mcnemar

    table = [[int((a & b).sum()), only_a], [only_b, int((~a & ~b).sum())]]
    return float(mcnemar(table, exact=True).pvalue)


def paired_bootstrap_ci(a, b, n_boot: int = 2000, seed: int = 0, *, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(a) - mean(b), resampling items (pairs kept together)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // d.size)  # bound memory: at most ~2M indices at a time
    for start in range(0, n_boot, step):
        m = min(step, n_boot - start)
        means[start:start + m] = d[rng.integers(0, d.size, size=(m, d.size))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def holm(pvals: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' multipletests, method='holm'). NaNs stay NaN and are
    not counted as tests."""
    p = np.asarray(pvals, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, accuracy) points no other point dominates (lower or equal cost and
    higher or equal accuracy, one of them strictly), sorted by cost. Points with NaN are skipped;
    exact duplicates (a tie) are all on the frontier, since neither dominates the other."""
    pts = [(i, float(c), float(a)) for i, (c, a) in enumerate(points)]
    pts = [p for p in pts if not (np.isnan(p[1]) or np.isnan(p[2]))]
    front, best, last = [], -np.inf, None
    for i, c, a in sorted(pts, key=lambda p: (p[1], -p[2], p[0])):
        if a > best or (c, a) == last:
            front.append(i)
            best, last = a, (c, a)
    return front


def _ok_rows(preds: pd.DataFrame) -> pd.DataFrame:
    err = preds["error"].notna() & (preds["error"].astype(str) != "") if "error" in preds else False
    return preds[~err] if isinstance(err, pd.Series) else preds


def pairs_table(preds: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, family: str = "all") -> pd.DataFrame:
    """Pairs of strategies on the same task and model, over the items both answered without an
    error (inner join on example_id). Within a pair, strategy_a is the one with the higher accuracy
    over all its items (ties: by name), so `diff = acc_a - acc_b` is usually >= 0.

    `family` says which pairs are compared and corrected together: "all" (every pair of a task) or
    "same_strategy" (only one strategy against itself in other runs: 'cot@a' vs 'cot@b'). p_holm adjusts
    p_mcnemar across the family's pairs of a task (every model of that task together)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown Holm family {family!r}")
    if preds.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    ok = _ok_rows(preds).copy()
    ok["correct"] = ok["correct"].fillna(False).astype(bool)
    rows = []
    for (task, model), g in ok.groupby(["task", "model"], sort=True):
        per = {s: d.drop_duplicates("example_id").set_index("example_id")["correct"]
               for s, d in g.groupby("strategy", sort=True)}
        order = sorted(per, key=lambda s: (-per[s].mean(), s))
        for sa, sb in combinations(order, 2):
            if family == "same_strategy" and base_strategy(sa) != base_strategy(sb):
                continue
            joined = pd.concat([per[sa].rename("a"), per[sb].rename("b")], axis=1, join="inner")
            a, b = joined["a"].to_numpy(bool), joined["b"].to_numpy(bool)
            lo, hi = paired_bootstrap_ci(a, b, n_boot=n_boot, seed=seed)
            n = len(joined)
            rows.append({"task": task, "model": model, "strategy_a": sa, "strategy_b": sb, "n": n,
                         "acc_a": a.mean() if n else np.nan, "acc_b": b.mean() if n else np.nan,
                         "diff": (a.mean() - b.mean()) if n else np.nan, "ci_low": lo, "ci_high": hi,
                         "p_mcnemar": mcnemar_exact(a, b), "holm_family": family})
    out = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    for _, idx in out.groupby("task").groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_mcnemar"].to_numpy())
    return out
