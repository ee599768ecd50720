"""Verdicts in plain words, written from the decisions (decisions.csv, harness/reports/decisions.py):
per task x model, the best cell, each other cell's decision against it at the stated margin, constant
answers called what they are, and the cheapest acceptable cell (best or non_inferior only). When no
cheaper cell is shown to be acceptable, the verdict says so and how many items would decide."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .decisions import decision_table
from .paired import base_strategy
from .report_format import _col, _num, fp, fusd, latency_phrase, pct, shown_latency, with_totals
from ..stats.decisions import DEFAULT_MARGIN

ALPHA = 0.05


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {fp(p)}"


def _names(xs: Sequence[str]) -> str:
    xs = [str(x) for x in xs]
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def _n_text(g: pd.DataFrame) -> str:
    ns = sorted({int(n) for n in g["n"]})
    return f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"


def points(margin: float) -> str:
    """0.05 -> '5 points' (accuracy points)."""
    x = 100 * margin
    return f"{x:.0f} point{'s' if round(x) != 1 else ''}" if abs(x - round(x)) < 1e-9 else f"{x:g} points"


def _interval(d: dict) -> str:
    return (f"{100 * d['diff']:+.1f} points, {100 * d['level']:.1f} % CI [{100 * d['ci_low']:+.1f}, "
            f"{100 * d['ci_high']:+.1f}]")


def _items(x: float) -> str:
    return f"{int(x):,}" if not math.isnan(x) else "more than 10,000,000"


def verdicts(summary: pd.DataFrame, pairs: pd.DataFrame, decisions: pd.DataFrame | None = None, *,
             margin: float = DEFAULT_MARGIN) -> list[dict]:
    """One plain-words verdict per task x model, from `decisions` (decision_table(summary, pairs,
    margin=margin) when not given). Cost: $ per example when any price is set, else mean prompt +
    completion tokens. Keys: task, model, best, significant (best beats every other tested cell),
    cheapest (the cheapest best / non_inferior cell), decisions (cell -> decision), text."""
    s = with_totals(summary)
    s = s[_col(s, "accuracy").notna()]
    dec = decision_table(summary, pairs, margin=margin) if decisions is None else decisions
    if len(dec):
        margin = float(dec["margin"].iloc[0])
    out = []
    for (task, model), g in s.groupby(["task", "model"], sort=True):
        use_usd = bool(_col(g, "cost_per_example_usd").gt(0).any())
        g = g.assign(_cost=_col(g, "cost_per_example_usd" if use_usd else "mean_total_tokens"))
        g = g.sort_values(["accuracy", "_cost", "strategy"], ascending=[False, True, True])
        d = dec[(dec["task"] == task) & (dec["model"] == model)].set_index("cell") if len(dec) else pd.DataFrame()
        kinds = {c: str(d.loc[c, "decision"]) if c in d.index else "inconclusive" for c in g["strategy"]}
        base = {"task": task, "model": model, "best": None, "significant": False, "cheapest": None,
                "decisions": kinds}
        unit = (lambda c: f"{fusd(c)} per example") if use_usd else (lambda c: f"{c:,.0f} tokens per example")
        const = [r for r in g.to_dict("records") if kinds[r["strategy"]] == "constant_answer"]
        const_text = "".join(
            f" {r['strategy']} answers '{r['constant_answer']}' on {round(_num(r.get('constant_share')) * r['n'])} of "
            f"{r['n']} items; its accuracy ({pct(r['accuracy'])}) is the share of that label, so it is not compared."
            for r in const)
        top = _num(g.iloc[0]["accuracy"])
        if top == 0:
            text = (f"On {task} ({model}), no strategy answered any item correctly ({_n_text(g)}); there is no "
                    f"best strategy." if len(g) > 1 else f"On {task} ({model}), {g.iloc[0]['strategy']} answered "
                    f"no item correctly ({_n_text(g)}); it is the only strategy that ran.")
            out.append({**base, "text": text})
            continue
        live = g[[kinds[x] != "constant_answer" for x in g["strategy"]]]
        if live.empty:
            out.append({**base, "text": f"On {task} ({model}), every strategy gives a constant answer; there is no "
                                        f"best strategy (margin {points(margin)}).{const_text}"})
            continue
        best = live[[kinds[x] == "best" for x in live["strategy"]]]
        best = best.iloc[0] if len(best) else live.iloc[0]
        lo, hi = 100 * _num(best.get("ci_low")), 100 * _num(best.get("ci_high"))
        ci = "CI unknown" if math.isnan(lo) or math.isnan(hi) else f"95 % CI {lo:.0f}–{hi:.0f} %"
        n_best = int(best["n"])
        # the single-request latency (probe, else estimate, else '—' and why) when some strategy here has one
        lat = any(not math.isnan(shown_latency(r)[0]) for r in g.to_dict("records"))
        text = (f"On {task} ({model}), {best['strategy']} is best at {pct(best['accuracy'])} ({ci}, n = {n_best}"
                + (f"; {latency_phrase(best)})" if lat else ")"))
        tied = [x for x in live["strategy"] if x != best["strategy"]
                and np.isclose(_num(live.set_index("strategy").loc[x, "accuracy"]), _num(best["accuracy"]), atol=1e-12)]
        if tied:
            text += f", tied in accuracy with {_names(tied)} (the reference is the cheaper)"
        others = [x for x in live["strategy"] if x != best["strategy"]]
        if not others:
            text += f"; it is the only strategy compared (margin {points(margin)})."
            out.append({**base, "best": best["strategy"], "text": text + const_text})
            continue
        groups = {k: [x for x in others if kinds[x] == k] for k in ("inferior", "non_inferior", "inconclusive")}
        parts = []
        if groups["inferior"]:
            parts.append(f"{_names(groups['inferior'])} {'is' if len(groups['inferior']) == 1 else 'are'} worse "
                         f"(the whole interval below 0)")
        if groups["non_inferior"]:
            parts.append(f"{_names(groups['non_inferior'])} {'is' if len(groups['non_inferior']) == 1 else 'are'} "
                         f"within {points(margin)} of it")
        if groups["inconclusive"]:
            parts.append(f"{_names(groups['inconclusive'])} {'is' if len(groups['inconclusive']) == 1 else 'are'} "
                         f"not decided")
        significant = len(groups["inferior"]) == len(others)
        text += f"; against it at a margin of {points(margin)}: " + "; ".join(parts) + "."
        ok = live[[kinds[x] in ("best", "non_inferior") for x in live["strategy"]]]
        ok = ok[ok["_cost"].notna()].sort_values(["_cost", "accuracy"], ascending=[True, False])
        cheapest = ok.iloc[0]["strategy"] if len(ok) else best["strategy"]
        if cheapest != best["strategy"]:
            c = ok.iloc[0]
            text += (f" The cheapest strategy shown to be within {points(margin)} of the best is {cheapest} "
                     f"({unit(c['_cost'])}{'; ' + latency_phrase(c) if lat else ''}; "
                     f"{_interval(d.loc[cheapest].to_dict())}).")
        else:
            cheaper = live[(live["_cost"] < _num(best["_cost"])).to_numpy() & np.array([kinds[x] == "inconclusive" for x in live["strategy"]], dtype=bool)]
            cheaper = cheaper.sort_values("_cost")
            if len(cheaper):
                c = cheaper.iloc[0]["strategy"]
                need = _num(d.loc[c, "items_needed"]) if c in d.index else float("nan")
                tested = c in d.index and not math.isnan(_num(d.loc[c, "level"]))
                if not tested:
                    say = (f"; {c} vs {best['strategy']} is not in the tested family (harness compare --all-pairs "
                           f"tests every pair)")
                elif math.isnan(need):
                    say = f"; no number of items would decide {c} vs {best['strategy']} ({_interval(d.loc[c].to_dict())})"
                else:
                    dd = _num(d.loc[c, "diff"])  # the interval shrinks around dd: the nearer-side test decides first
                    way = "worse" if -dd > dd + margin else f"within {points(margin)}"
                    say = (f"; about {_items(need)} items per strategy would decide {c} vs {best['strategy']} "
                           f"({_interval(d.loc[c].to_dict())}; if the difference held, as {way})")
                text += f" No cheaper strategy is shown to be within {points(margin)} of the best at n = {n_best}{say}."
            elif live["_cost"].notna().any() and _num(best["_cost"]) > live["_cost"].min():
                text += (f" No cheaper strategy is within {points(margin)} of the best: every cheaper one is "
                         f"shown to be worse.")
            else:
                text += f" It is also the cheapest ({unit(best['_cost'])})."
        out.append({**base, "best": best["strategy"], "significant": significant, "cheapest": cheapest,
                    "text": text + const_text})
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
