"""decisions.csv: each cell of a task x model against the best cell, in one word.

    d = decision_table(summary, pairs, margin=0.05)     # one row per cell

A cell is one strategy (its template and the run it came from are in the strategy label) of one model.
Per task x model, the reference is the most accurate cell that is not a constant answer (ties: the
cheaper, then by name). Every other cell gets its pair with the reference from pairs.csv (the same
numbers: the interval of cell - reference at the pair's `level`, Holm's p over the task's pairs) and:

    best             the reference
    non_inferior     the whole interval lies above -margin
    inferior         else, the whole interval lies below 0
    inconclusive     else; items_needed says at how many items per cell it would decide
    constant_answer  the cell gives one answer on >= 95 % of its items in a task with a fixed label set

The rules and their reasons: docs/statistics.md.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from ..stats.decisions import DEFAULT_MARGIN, constant_answer, decide, items_needed, items_needed_wald
from .report_format import _col, _missing, fp, pct, with_totals

COLUMNS = ["task", "model", "cell", "reference", "diff", "ci_low", "ci_high", "level", "margin", "decision",
           "p_holm", "items_needed"]
MAX_LABELS = 10  # a task whose gold answers take at most this many values has a fixed label set


def constant_cells(preds: pd.DataFrame) -> pd.DataFrame:
    """Per task x strategy x model: constant_answer (the answer, or None) and constant_share, for the
    tasks with a fixed label set (gold answers take at most MAX_LABELS distinct values over the task)."""
    cols = ["task", "strategy", "model", "constant_answer", "constant_share"]
    if preds.empty or "answer" not in preds:
        return pd.DataFrame(columns=cols)
    err = preds["error"].notna() & (preds["error"].astype(str) != "") if "error" in preds else False
    ok = preds[~err] if isinstance(err, pd.Series) else preds
    rows = []
    for task, t in ok.groupby("task", sort=True):
        fixed = t["gold"].dropna().astype(str).nunique() <= MAX_LABELS if "gold" in t else False
        for (strategy, model), g in t.groupby(["strategy", "model"], sort=True):
            per_item = g.drop_duplicates("example_id")["answer"]
            c = constant_answer(per_item) if fixed else None
            rows.append({"task": task, "strategy": strategy, "model": model,
                         "constant_answer": c[0] if c else None, "constant_share": c[1] / c[2] if c else None})
    return pd.DataFrame(rows, columns=cols)


def _pair(pairs: pd.DataFrame, task: str, model: str, cell: str, ref: str) -> tuple[dict, bool] | None:
    """The pair row and whether the cell is its strategy_a."""
    if pairs.empty:
        return None
    m = pairs[(pairs["task"] == task) & (pairs["model"] == model)]
    for flip, (x, y) in ((False, (cell, ref)), (True, (ref, cell))):
        hit = m[(m["strategy_a"] == x) & (m["strategy_b"] == y)]
        if len(hit):
            return hit.iloc[0].to_dict(), not flip
    return None


def _cost(g: pd.DataFrame) -> pd.Series:
    usd = bool(_col(g, "cost_per_example_usd").gt(0).any())
    return _col(g, "cost_per_example_usd" if usd else "mean_total_tokens")


def decision_table(summary: pd.DataFrame, pairs: pd.DataFrame, *, margin: float = DEFAULT_MARGIN) -> pd.DataFrame:
    """One row per cell with an accuracy (columns COLUMNS); `summary` may carry constant_answer."""
    if summary.empty:
        return pd.DataFrame(columns=COLUMNS)
    s = with_totals(summary)
    s = s[_col(s, "accuracy").notna()]
    if "constant_answer" not in s:
        s = s.assign(constant_answer=None)
    rows = []
    for (task, model), g in s.groupby(["task", "model"], sort=True):
        g = g.assign(_cost=_cost(g), _const=g["constant_answer"].notna() & (g["constant_answer"].astype(str) != "")
                     & (g["constant_answer"].astype(str) != "nan"))
        g = g.sort_values(["accuracy", "_cost", "strategy"], ascending=[False, True, True], na_position="last")
        live = g[~g["_const"]]
        ref = live.iloc[0]["strategy"] if len(live) else None
        for r in g.to_dict("records"):
            base = {"task": task, "model": model, "cell": r["strategy"], "reference": ref, "diff": np.nan,
                    "ci_low": np.nan, "ci_high": np.nan, "level": np.nan, "margin": margin, "p_holm": np.nan,
                    "items_needed": np.nan}
            if r["_const"]:
                rows.append({**base, "decision": "constant_answer"})
                continue
            if r["strategy"] == ref:
                rows.append({**base, "diff": 0.0, "decision": "best"})
                continue
            hit = _pair(pairs, task, model, r["strategy"], ref)
            if hit is None or not hit[0].get("n"):
                rows.append({**base, "decision": "inconclusive"})  # not in the tested family, or no shared item
                continue
            pr, is_a = hit
            sign = 1.0 if is_a else -1.0
            lo, hi = (pr["ci_low"], pr["ci_high"]) if is_a else (-pr["ci_high"], -pr["ci_low"])
            diff = sign * float(pr["diff"])
            level = float(pr.get("level", 0.95))
            dec = decide(diff, float(lo), float(hi), margin=margin)
            need = np.nan
            if dec == "inconclusive" and not math.isnan(level):
                if pr.get("method", "score") == "score":
                    b, c = (pr["only_a"], pr["only_b"]) if is_a else (pr["only_b"], pr["only_a"])
                    need = items_needed(int(pr["n"]), float(b), float(c), alpha=1 - level, margin=margin)
                else:  # clustered: the Wald width of its interval, scaled
                    from scipy.stats import t as student_t

                    se = (float(hi) - float(lo)) / 2 / student_t.isf((1 - level) / 2, max(int(pr["n"]) - 1, 1))
                    need = items_needed_wald(int(pr["n"]), diff, se, alpha=1 - level, margin=margin)
            rows.append({**base, "diff": diff, "ci_low": float(lo), "ci_high": float(hi), "level": level,
                         "decision": dec, "p_holm": float(pr["p_holm"]), "items_needed": need})
    return pd.DataFrame(rows, columns=COLUMNS)


def decisions_rows(dec: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    head = ["task", "model", "cell", "reference", "cell − reference [interval]", "level", "margin", "decision",
            "p Holm", "items needed"]
    rows = []
    for r in dec.to_dict("records"):
        iv = "–" if _missing(r["ci_low"]) else f"{pct(r['diff'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]"
        rows.append([r["task"], r["model"], r["cell"], str(r["reference"] or "–"), iv,
                     "–" if _missing(r["level"]) else pct(r["level"], 2), pct(r["margin"], 0), r["decision"],
                     "–" if _missing(r["p_holm"]) else fp(r["p_holm"]),
                     "–" if _missing(r["items_needed"]) else f"{int(r['items_needed']):,}"])
    return head, rows


def shared_items(preds: pd.DataFrame, run_ids: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """Keep, per task, only the items that every run which ran the task has, so cells of different runs
    are ranked and tested on the same items. Returns the rows kept and a note ('coin_flip 20 of 40
    items', empty when nothing was dropped)."""
    if preds.empty or "run_id" not in preds or preds["run_id"].isna().all():
        return preds, ""
    keep, notes = [], []
    for task, g in preds.groupby("task", sort=True):
        sets = [set(x["example_id"].astype(str)) for _, x in g.groupby("run_id")]
        common = set.intersection(*sets) if sets else set()
        every = set.union(*sets) if sets else set()
        keep.append(g[g["example_id"].astype(str).isin(common)])
        if len(common) < len(every):
            notes.append(f"{task} {len(common)} of {len(every)} items")
    return pd.concat(keep).sort_index(), ", ".join(notes)


def resolve_margin(margin: float | None, run: dict) -> float:
    """The margin asked for, else the one run.json records (the report's, else the run spec's), else
    DEFAULT_MARGIN; checked."""
    from ..errors import ConfigError

    recorded = run.get("margin", (run.get("config") or {}).get("margin"))
    m = margin if margin is not None else (recorded if recorded is not None else DEFAULT_MARGIN)
    try:
        m = float(m)
    except (TypeError, ValueError):
        m = float("nan")
    if not 0 <= m < 1:
        raise ConfigError(f"margin {margin!r} is not an accuracy difference in [0, 1)", field="--margin",
                          fix="give it as a share of accuracy: 0.05 is 5 points")
    return m
