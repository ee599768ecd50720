"""The optimiser's report: optimize.csv, the result in optimize.json, optimize.md and the verdict sentence.

- every searched candidate's val accuracy, n and requests (optimize.csv, one row each; the baseline has a
  row of its own when it was not searched);
- the winner's val and test accuracy and their gap, the selection inflation, with Newcombe's interval
  (val and test are disjoint items);
- the inflation expected under the null for this many candidates and this val size (harness/stats/selection.py);
- the paired test difference winner - baseline with Tango's interval and the verdicts' decision.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..runs.results import write_json_atomic, write_text_atomic
from ..stats.selection import compare_on_test, expected_inflation, gap_interval

CSV_COLUMNS = ["role", "candidate", "template", "val_correct", "val_n", "val_errors", "val_accuracy", "requests",
               "rank", "test_correct", "test_n", "test_accuracy"]


def _per_item(preds: pd.DataFrame, strategy: str) -> pd.Series:
    rows = preds[preds["strategy"] == strategy]
    ok = ~(rows["error"].notna() & (rows["error"].astype(str) != ""))
    return rows[ok].set_index("example_id")["correct"].fillna(False).astype(bool)


def optimize_result(state: dict, test_preds: pd.DataFrame) -> dict:
    """The figures of a finished optimisation (selection made, test read)."""
    sel, settings = state["selection"], state["settings"]
    winner, baseline = sel["winner"], settings["baseline"]
    w, b = _per_item(test_preds, winner), _per_item(test_preds, baseline)
    gap, gap_lo, gap_hi = gap_interval(sel["val_correct"], sel["val_n"], int(w.sum()), len(w))
    expected = (expected_inflation(sel["candidates"], sel["val_n"], min(1.0, max(0.0, sel["mean_val_accuracy"])))
                if sel["val_n"] else math.nan)
    both = pd.concat([w.rename("w"), b.rename("b")], axis=1, join="inner")
    cmp = compare_on_test(both["w"].to_numpy(), both["b"].to_numpy(), margin=settings["margin"])
    return {"winner": winner, "baseline": baseline, "candidates": sel["candidates"],
            "val_accuracy": sel["val_accuracy"], "val_n": sel["val_n"],
            "test_accuracy": float(w.mean()) if len(w) else math.nan, "test_n": int(len(w)),
            "baseline_test_accuracy": float(b.mean()) if len(b) else math.nan, "baseline_test_n": int(len(b)),
            "gap": gap, "gap_ci_low": gap_lo, "gap_ci_high": gap_hi, "expected_inflation": expected,
            "null_p": sel["mean_val_accuracy"], "test_comparison": cmp, "margin": settings["margin"]}


def verdict_sentence(r: dict) -> str:
    """One sentence: the winner, val vs test, the gap against the expected inflation, the baseline decision."""
    pts = lambda x: f"{100 * x:+.1f}"  # noqa: E731
    c = r["test_comparison"]
    if c["n"]:
        other = r["baseline"] if c["other"] == "baseline" else f"the winner ({r['winner']})"
        best = "the winner" if c["best"] == "winner" else r["baseline"]
        vs = (f"on test, winner - {r['baseline']} = {pts(c['diff'])} points [{pts(c['ci_low'])}, {pts(c['ci_high'])}] "
              f"(n={c['n']}): {other} is {c['decision'].replace('_', '-')} to {best}")
        if c["decision"] == "inconclusive" and not math.isnan(c.get("items_needed", math.nan)):
            vs += f" (about {int(c['items_needed'])} test items would decide)"
    else:
        vs = "the baseline and the winner share no test item answered without an error"
    return (f"{r['winner']} won among {r['candidates']} candidates: val {100 * r['val_accuracy']:.1f} % "
            f"(n={r['val_n']}), test {100 * r['test_accuracy']:.1f} % (n={r['test_n']}); gap {pts(r['gap'])} points "
            f"[{pts(r['gap_ci_low'])}, {pts(r['gap_ci_high'])}], {pts(r['expected_inflation'])} expected from "
            f"selection alone among {r['candidates']} equal candidates; {vs}.")


def optimize_table(state: dict, test_preds: pd.DataFrame) -> pd.DataFrame:
    sel = state["selection"]
    rows = [{"role": "winner" if t["candidate"] == sel["winner"] else "candidate", **t} for t in sel["table"]]
    baseline = state["settings"]["baseline"]
    for strategy in dict.fromkeys([sel["winner"], baseline]):
        t = _per_item(test_preds, strategy)
        row = next((r for r in rows if r["candidate"] == strategy), None)
        if row is None:
            row = {"role": "baseline", "candidate": strategy}
            rows.append(row)
        elif strategy == baseline and strategy != sel["winner"]:
            row["role"] = "baseline"
        row.update(test_correct=int(t.sum()), test_n=len(t), test_accuracy=float(t.mean()) if len(t) else math.nan)
    df = pd.DataFrame(rows).reindex(columns=CSV_COLUMNS)
    ints = ["val_correct", "val_n", "val_errors", "requests", "rank", "test_correct", "test_n"]
    return df.astype({c: "Int64" for c in ints})


def write_optimize(folder: Path, state: dict, test_preds: pd.DataFrame, *, extra: dict | None = None) -> dict:
    """optimize.csv, optimize.md and the result in optimize.json; returns the result (with `sentence`)."""
    result = optimize_result(state, test_preds)
    result["sentence"] = verdict_sentence(result)
    result.update(extra or {})
    table = optimize_table(state, test_preds)
    write_text_atomic(folder / "optimize.csv", table.to_csv(index=False))
    write_json_atomic(folder / "optimize.json", {**state, "result": result})
    write_text_atomic(folder / "optimize.md", optimize_markdown(state, result, table))
    return result


def optimize_markdown(state: dict, r: dict, table: pd.DataFrame) -> str:
    s, sizes = state["settings"], state["sizes"]
    c = r["test_comparison"]
    lines = [f"# Optimisation of {state['task']}", "", r["sentence"], "",
             "## Splits (by a hash of each item's id)", "",
             f"- items {sizes['items']}: val share {state['split']['val']}, test share {state['split']['test']}, "
             f"split seed {state['split']['seed']}",
             f"- train (exemplar pool): {sizes['train']} items; val read: {sizes['val']} of {sizes['val_part']}; "
             f"test: {sizes['test']} (read once, after the selection)",
             f"- preset {s['preset']}, budget {s['budget'] or 'none'} requests; {len(state['chosen'])} of "
             f"{len(state['candidates'])} candidates searched, {sum(state['val_requests'].values())} val requests",
             "", "## Winner", "",
             f"- {r['winner']}: val {100 * r['val_accuracy']:.1f} % (n={r['val_n']}), test "
             f"{100 * r['test_accuracy']:.1f} % (n={r['test_n']})",
             f"- gap val - test {100 * r['gap']:+.1f} points, 95 % CI [{100 * r['gap_ci_low']:+.1f}, "
             f"{100 * r['gap_ci_high']:+.1f}] (Newcombe); expected under the null of {r['candidates']} equal "
             f"candidates at p = {r['null_p']:.3f}: {100 * r['expected_inflation']:+.1f}",
             f"- vs {r['baseline']} on test: {100 * c['diff']:+.1f} points, 95 % CI [{100 * c['ci_low']:+.1f}, "
             f"{100 * c['ci_high']:+.1f}] (Tango, paired, n={c['n']}), p = {c['p']:.3g}; decision: "
             f"{c['other']} {c['decision']}",
             ]
    if r.get("pinned_spec"):
        lines += [f"- to run again: `{r['pinned_spec']}` ({r.get('pinned_note', '')}); template variant: "
                  f"`{r.get('template_file', '')}`"]
    lines += ["", "## Candidates", "", table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False)]
    return "\n".join(lines) + "\n"


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
