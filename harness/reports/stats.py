"""Statistics over the results table: confidence intervals, the summary, and the maj@k estimator.

Pure functions over DataFrames and arrays. CIs use statsmodels; the maj@k estimator is checked
against brute-force enumeration in tests/test_stats.py.
"""
from __future__ import annotations

from collections import Counter
from math import comb
from typing import Sequence

import numpy as np
import pandas as pd

from ..runs.latency_model import estimate_summary, latency_source, no_latency_reason
from ..scoring.scorers import all_aggregates

GROUP = ["task", "strategy", "model"]
# summary.csv's columns, in order, in every run: a measure a run does not have is an empty column, never a
# missing one (scripts and notebooks that read the file need not test for it). The scorer table's aggregates
# (harness/scoring/scorers.py) go between the cost and the last two; see summary_columns().
SUMMARY_HEAD = [*GROUP, "n", "accuracy", "ci_low", "ci_high", "parse_fail_rate", "errors", "mean_prompt_tokens",
                "mean_completion_tokens", "total_tokens",
                "engine_s_total", "engine_s_per_example", "tokens_per_s", "completion_tokens_per_s",  # throughput()
                "probe_n", "probe_concurrency", "probe_latency_p50_s", "probe_latency_p95_s",  # probe_summary()
                "probe_ttft_p50_s", "probe_ttft_p95_s", "probe_tpot_p50_s",
                "est_n", "est_latency_p50_s", "est_latency_p95_s", "est_ttft_p50_s",  # latency_model.estimate_summary
                "est_ttft_p95_s", "est_extrapolated_share", "est_fit_mape", "latency_source",
                "batch_latency_mean_s", "batch_latency_p50_s", "batch_latency_p95_s", "batch_ttft_p50_s",
                "batch_ttft_p95_s", "total_cost_usd", "cost_per_example_usd", "total_flops"]
SUMMARY_TAIL = ["format", "cached_rows"]


def summary_columns() -> list[str]:
    """Every column of summary.csv, in order (SUMMARY_HEAD, the scorer table's aggregates, SUMMARY_TAIL)."""
    aggs = [a.column for a in all_aggregates()]
    return SUMMARY_HEAD + [c for c in dict.fromkeys(aggs) if c not in SUMMARY_HEAD] + SUMMARY_TAIL


def wilson_ci(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """95 % Wilson score interval for a proportion (statsmodels' proportion_confint)."""
    if n == 0:
        return (float("nan"), float("nan"))
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def _mean(s: pd.Series) -> float | None:
    s = pd.to_numeric(s, errors="coerce").dropna()
    return float(s.mean()) if len(s) else None


def _quantile(s: pd.Series, q: float) -> float | None:
    s = pd.to_numeric(s, errors="coerce").dropna()
    return float(s.quantile(q)) if len(s) else None


def throughput(g: pd.DataFrame) -> dict:
    """The group's throughput cost from its rows' shares of measured engine time (docs/measures.md):
    rows answered from the request cache carry no share and are left out."""
    share = pd.to_numeric(g["engine_s_share"], errors="coerce") if "engine_s_share" in g else None
    if share is None or not share.notna().any():
        return {}
    m = share.notna()
    total = float(share[m].sum())
    ptoks = float(pd.to_numeric(g.loc[m, "prompt_tokens"], errors="coerce").fillna(0).sum())
    ctoks = float(pd.to_numeric(g.loc[m, "completion_tokens"], errors="coerce").fillna(0).sum())
    return {"engine_s_total": total, "engine_s_per_example": total / int(m.sum()),
            "tokens_per_s": (ptoks + ctoks) / total if total > 0 else None,
            "completion_tokens_per_s": ctoks / total if total > 0 else None}


def probe_summary(probes: pd.DataFrame | None) -> dict[tuple, dict]:
    """Per task x strategy x model: p50 / p95 of the probe's end-to-end latency, TTFT and time per output
    token (requests that ended in an error are left out)."""
    if probes is None or probes.empty:
        return {}
    ok = probes[probes["error"].isna() | (probes["error"].astype(str) == "")]
    out = {}
    for key, g in ok.groupby(GROUP, sort=True, dropna=False):
        out[key] = {"probe_n": len(g), "probe_concurrency": int(pd.to_numeric(g["probe_concurrency"]).max()),
                    "probe_latency_p50_s": _quantile(g["latency_s"], 0.5),
                    "probe_latency_p95_s": _quantile(g["latency_s"], 0.95),
                    "probe_ttft_p50_s": _quantile(g["ttft_s"], 0.5), "probe_ttft_p95_s": _quantile(g["ttft_s"], 0.95),
                    "probe_tpot_p50_s": _quantile(g["tpot_s"], 0.5)}
    return out


def summarize(preds: pd.DataFrame, probes: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per task x strategy x model. Accuracy is over rows without an error (an error is not
    a wrong answer); errors are counted apart from parse failures. Throughput cost, probe latency and
    the in-batch request times are described in docs/measures.md; cached rows are in none of them."""
    rows = []
    if preds.empty:
        return pd.DataFrame(columns=summary_columns())
    from ..runs.results import RENAMED_PREDICTION_COLUMNS, upgrade_columns

    preds = upgrade_columns(preds, RENAMED_PREDICTION_COLUMNS)
    preds = preds.assign(**{c: None for c in ("batch_latency_s", "batch_ttft_s") if c not in preds.columns})
    probed = probe_summary(probes)
    for key, g in preds.groupby(GROUP, sort=True, dropna=False):
        err = g["error"].notna() & (g["error"].astype(str) != "")
        ok = g[~err]
        n = len(ok)
        correct = int(ok["correct"].fillna(False).astype(bool).sum())
        lo, hi = wilson_ci(correct, n)
        clusters, se_ratio = n, 1.0 if n > 1 else None
        if n and "example_id" in ok and (clusters := int(ok["example_id"].nunique())) < n:
            # rows share items: the cluster-robust (CR1) error by item, and Wilson at n / design effect
            from ..stats.cluster import cluster_se, wilson_design

            _, se, naive, _ = cluster_se(ok["correct"].fillna(False).astype(float), ok["example_id"])
            se_ratio = se / naive if naive > 0 and se == se else None
            lo, hi = wilson_design(correct, n, se_ratio ** 2 if se_ratio else 1.0)
        row = dict(zip(GROUP, key))
        pt = pd.to_numeric(g["prompt_tokens"], errors="coerce").fillna(0)
        ct = pd.to_numeric(g["completion_tokens"], errors="coerce").fillna(0)
        row.update({
            "n": n, "accuracy": correct / n if n else None, "ci_low": lo, "ci_high": hi,
            "n_clusters": clusters, "se_ratio": se_ratio,
            "parse_fail_rate": float((~ok["parse_ok"].fillna(False).astype(bool)).mean()) if n else None,
            "errors": int(err.sum()),
            "mean_prompt_tokens": _mean(g["prompt_tokens"]), "mean_completion_tokens": _mean(g["completion_tokens"]),
            "total_tokens": int(pt.sum() + ct.sum()),
        })
        # rows answered from the request cache: their times are replays of an earlier run, not measurements
        # of this one, so every time and throughput figure leaves them out (old runs kept the replayed times)
        fresh = g[~g["cached"].fillna(False).astype(bool)] if "cached" in g else g
        row.update(throughput(fresh))
        row.update(probed.get(key, {}))
        est = estimate_summary(fresh)  # the calibrated latency model (est_*), harness/runs/latency_model.py
        row.update(est)
        # which single-request latency the group has: probe, else estimate (how calibrated), else none and why
        row["latency_source"] = latency_source(est, key in probed)
        row["latency_note"] = None if row["latency_source"] else no_latency_reason(g, fresh)
        # time in this batch (queueing behind the batch mates included)
        row.update({"batch_latency_mean_s": _mean(fresh["batch_latency_s"]),
                    "batch_latency_p50_s": _quantile(fresh["batch_latency_s"], 0.5),
                    "batch_latency_p95_s": _quantile(fresh["batch_latency_s"], 0.95),
                    "batch_ttft_p50_s": _quantile(fresh["batch_ttft_s"], 0.5),
                    "batch_ttft_p95_s": _quantile(fresh["batch_ttft_s"], 0.95)})
        if "cost_usd" in g and g["cost_usd"].notna().any():
            cost = pd.to_numeric(g["cost_usd"], errors="coerce")
            row["total_cost_usd"] = float(cost.sum())
            row["cost_per_example_usd"] = float(cost.mean())
        if "flops" in g and g["flops"].notna().any():
            row["total_flops"] = float(pd.to_numeric(g["flops"], errors="coerce").sum())
        for agg in all_aggregates():  # the scorer table's summary columns, where the rows have them
            if agg.source in g and ok[agg.source].notna().any():
                vals = ok[agg.source]
                row[agg.column] = (float(vals.fillna(False).astype(bool).mean()) if agg.kind == "rate"
                                   else _mean(vals))
        if "format" in g and g["format"].notna().any():
            row["format"] = "/".join(sorted(set(g["format"].dropna().astype(str))))
        if "cached" in g:
            row["cached_rows"] = int(g["cached"].fillna(False).astype(bool).sum())
        rows.append(row)
    from .decisions import constant_cells  # constant_answer / constant_share (harness/reports/decisions.py)

    cols = summary_columns()
    out = pd.DataFrame(rows)
    out = out.merge(constant_cells(preds), on=GROUP, how="left") if len(out) else out
    return out.reindex(columns=cols + [c for c in out.columns if c not in cols])  # a column no list names: kept, last


# -- maj@k ----------------------------------------------------------------------------------
def maj_at_k_exact(answers: Sequence[str | None], gold: str, k: int) -> float:
    """Expected majority-vote correctness over all size-k subsets of the N samples.

    Samples with answer None (no extractable answer) do not vote; a subset with no votes is wrong.
    Ties are broken uniformly at random among the tied answers, so a tie containing the gold answer
    counts 1 / (number tied). Computed exactly by dynamic programming over the answer counts
    (no enumeration): O(k^2 x distinct answers x k).
    """
    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}")
    counts = Counter(a for a in answers if a is not None)
    c_gold = counts.pop(gold, 0)
    c_none = sum(1 for a in answers if a is None)
    others = list(counts.values())
    total = 0.0
    for j in range(1, min(c_gold, k) + 1):
        # state: (chosen so far among others+none, number of other answers tied at j) -> ways
        states: dict[tuple[int, int], int] = {(0, 0): 1}
        for c in others:
            nxt: dict[tuple[int, int], int] = {}
            for (m, t), w in states.items():
                for x in range(0, min(c, j, k - j - m) + 1):
                    key = (m + x, t + (x == j))
                    nxt[key] = nxt.get(key, 0) + w * comb(c, x)
            states = nxt
        need = k - j
        for (m, t), w in states.items():
            rest = need - m
            if 0 <= rest <= c_none:
                total += comb(c_gold, j) * w * comb(c_none, rest) / (1 + t)
    return total / comb(n, k)


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over examples."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def majk_table(preds: pd.DataFrame, samples: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """maj@k for k = 1..N per task x strategy x model, with a bootstrap CI over examples."""
    cols = GROUP + ["k", "maj_at_k", "ci_low", "ci_high"]
    if samples.empty:
        return pd.DataFrame(columns=cols)
    gold = preds.set_index(["task", "strategy", "model", "example_id"])["gold"].to_dict()
    rows = []
    for key, g in samples.groupby(GROUP, sort=True):
        per_ex = []
        for ex_id, s in g.groupby("example_id", sort=True):
            answers = [None if (a is None or (isinstance(a, float) and np.isnan(a))) else str(a)
                       for a in s.sort_values("sample_idx")["answer"]]
            per_ex.append((answers, gold.get((*key, ex_id))))
        n_max = min(len(a) for a, _ in per_ex)
        for k in range(1, n_max + 1):
            vals = np.array([maj_at_k_exact(a[:n_max], str(gd), k) if gd is not None else 0.0 for a, gd in per_ex])
            lo, hi = bootstrap_ci(vals, seed=seed)
            rows.append({**dict(zip(GROUP, key)), "k": k, "maj_at_k": float(vals.mean()), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=cols)

