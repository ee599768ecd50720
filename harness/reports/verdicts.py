"""Verdicts in plain words: per task, the best strategy (or a tie, or none correct), whether it is
significantly better than the runner-up (exact McNemar, Holm), and the cheapest strategy not
significantly worse; and the sentences that say which Holm family was corrected."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .paired import base_strategy
from .report_format import _col, _num, fp, fusd, pct, with_totals

ALPHA = 0.05


def _pair(pairs: pd.DataFrame, task: str, model: str, a: str, b: str) -> dict | None:
    m = pairs[(pairs["task"] == task) & (pairs["model"] == model)
              & (((pairs["strategy_a"] == a) & (pairs["strategy_b"] == b))
                 | ((pairs["strategy_a"] == b) & (pairs["strategy_b"] == a)))]
    return m.iloc[0].to_dict() if len(m) else None


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {fp(p)}"


def _cheapest_sentence(g: pd.DataFrame, pairs: pd.DataFrame, best: str, *, use_usd: bool) -> tuple[str | None, str]:
    """The cheapest strategy whose accuracy is not significantly below the best's (Holm p >= ALPHA)."""
    task, model = g["task"].iloc[0], g["model"].iloc[0]
    ok = [best] + [s for s in g["strategy"].iloc[1:]
                   if (pr := _pair(pairs, task, model, best, s)) and _num(pr["p_holm"]) >= ALPHA]
    cand = g[g["strategy"].isin(ok) & g["_cost"].notna()].sort_values(["_cost", "accuracy"], ascending=[True, False])
    if cand.empty or len(g) == 1:
        return None, ""
    c = cand.iloc[0]
    unit = f"{fusd(c['_cost'])} per example" if use_usd else f"{c['_cost']:,.0f} tokens per example"
    itself = " itself" if c["strategy"] == best else ""
    return c["strategy"], f" The cheapest strategy not significantly worse than the best is {c['strategy']}{itself} ({unit})."


def _names(xs: Sequence[str]) -> str:
    xs = [str(x) for x in xs]
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def _n_text(g: pd.DataFrame) -> str:
    ns = sorted({int(n) for n in g["n"]})
    return f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"


def verdicts(summary: pd.DataFrame, pairs: pd.DataFrame) -> list[dict]:
    """One plain-words verdict per task x model: best strategy, whether it beats the runner-up
    (Holm-adjusted exact McNemar), and the cheapest strategy not significantly worse than the best
    (by $ per example when any price is set, else by mean prompt + completion tokens).
    When every strategy scored 0, or the top accuracy is shared, the verdict says so and names no best."""
    s = with_totals(summary)
    s = s[_col(s, "accuracy").notna()]
    out = []
    for (task, model), g in s.groupby(["task", "model"], sort=True):
        # $ whenever a price is set (token prices or an hourly price); all-$0 (self-hosted, unpriced): tokens
        use_usd = bool(_col(g, "cost_per_example_usd").gt(0).any())
        g = g.assign(_cost=_col(g, "cost_per_example_usd" if use_usd else "mean_total_tokens"))
        g = g.sort_values(["accuracy", "_cost", "strategy"], ascending=[False, True, True])
        best = g.iloc[0]
        top = _num(best["accuracy"])
        tied = g[np.isclose(_col(g, "accuracy"), top, rtol=0, atol=1e-12)]
        base = {"task": task, "model": model, "best": None, "significant": False, "cheapest": None}
        if top == 0:
            text = (f"On {task} ({model}), no strategy answered any item correctly ({_n_text(g)}); there is no "
                    f"best strategy." if len(g) > 1 else f"On {task} ({model}), {best['strategy']} answered no item "
                    f"correctly ({_n_text(g)}); it is the only strategy that ran.")
            out.append({**base, "text": text})
            continue
        lo, hi = 100 * _num(best.get("ci_low")), 100 * _num(best.get("ci_high"))
        ci = "CI unknown" if math.isnan(lo) or math.isnan(hi) else f"95 % CI {lo:.0f}–{hi:.0f} %"
        if len(tied) > 1:
            names = sorted(tied["strategy"])
            text = (f"On {task} ({model}), tie between {_names(names)} at {pct(top)} ({_n_text(tied)}); "
                    f"no strategy is best.")
            cheap = tied[tied["_cost"].notna()].sort_values(["_cost", "strategy"])
            if len(cheap):
                c = cheap.iloc[0]
                unit = f"{fusd(c['_cost'])} per example" if use_usd else f"{c['_cost']:,.0f} tokens per example"
                text += f" The cheapest of the tied strategies is {c['strategy']} ({unit})."
                base["cheapest"] = c["strategy"]
            out.append({**base, "tie": names, "text": text})
            continue
        text = f"On {task} ({model}), {best['strategy']} is best at {pct(best['accuracy'])} ({ci}, n = {best['n']})"
        significant = False
        if len(g) == 1:
            text += "; it is the only strategy that ran."
        else:
            runner = g.iloc[1]["strategy"]
            pr = _pair(pairs, task, model, best["strategy"], runner)
            p = _num(pr["p_holm"]) if pr else float("nan")
            significant = p < ALPHA
            if pr is None:
                text += (f"; its comparison with the runner-up {runner} is not in the tested family "
                         f"(harness compare --all-pairs tests it).")
            elif math.isnan(p):
                text += f"; it shares no items with the runner-up {runner}, so there is no paired test."
            elif significant:
                text += f"; it is significantly better than the runner-up {runner} ({_p_text(p)}, Holm)."
            else:
                text += f"; it is not significantly better than {runner} ({_p_text(p)}, Holm)."
        cheapest, sentence = _cheapest_sentence(g, pairs, best["strategy"], use_usd=use_usd)
        out.append({**base, "best": best["strategy"], "significant": significant, "cheapest": cheapest,
                    "text": text + sentence})
    return out


def family_verdicts(pairs: pd.DataFrame) -> list[dict]:
    """For `harness compare` (same-strategy family): one line per strategy compared with itself across runs."""
    out = []
    fam = pairs[pairs["holm_family"] == "same_strategy"] if "holm_family" in pairs else pairs.iloc[0:0]
    for r in fam.to_dict("records"):
        k = int((fam["task"] == r["task"]).sum())
        p = _num(r["p_holm"])
        sig = "significant" if p < ALPHA else "not significant"
        out.append({"task": r["task"], "model": r["model"], "best": None, "significant": p < ALPHA, "cheapest": None,
                    "text": f"On {r['task']} ({r['model']}), {base_strategy(r['strategy_a'])} across runs: "
                            f"{r['strategy_a']} {pct(r['acc_a'])} vs {r['strategy_b']} {pct(r['acc_b'])} "
                            f"(n = {r['n']}), {sig} ({_p_text(p) if not math.isnan(p) else 'no paired test'}, "
                            f"Holm over the {k} same-strategy comparison{'s' if k != 1 else ''} of {r['task']})."})
    return out


HOLM_TEXT = {
    "all": "p-values are Holm-adjusted across all pairs of strategies of a task (the family corrected).",
    "same_strategy": ("Family corrected (Holm): the same strategy across runs, per task — the comparisons "
                      "harness compare makes by default; pairs of different strategies are not tested "
                      "(harness compare --all-pairs tests and corrects every pair)."),
    "all_runs": ("Family corrected (Holm): all pairs of strategies and runs of a task "
                 "(harness compare --all-pairs)."),
}


# -- examples -------------------------------------------------------------------------------
