"""Report sections of judged tasks (docs/judge.md): the judge against the rule beside it (q0, q1, κ,
the bias-corrected accuracy), and pairwise preferences with their flip rate and sign test."""
from __future__ import annotations

from typing import Any

from ..stats.judge import quality_table

QUALITY_NOTE = ("The judge against the rule scorer beside it, on every item the judge decided: specificity q0 = "
                "P(judge fails | rule wrong), sensitivity q1 = P(judge passes | rule right), Cohen's κ, 95 % CIs. "
                "θ̂ corrects the judge's pass rate on a test half of the items with q0, q1 from the other half "
                "(Lee et al. 2025, plug-in interval); compare it with the rule's accuracy on the same half.")
PAIRWISE_NOTE = ("Each item compared twice, A shown first and B shown first; a preference that changes with the "
                 "order is a tie (flipped). p: exact sign test over the items that did not tie.")


def _pct(v: Any, lo: Any = None, hi: Any = None) -> str:
    if v is None or v != v:
        return "–"
    s = f"{100 * v:.1f} %"
    return s + (f" [{100 * lo:.0f}–{100 * hi:.0f}]" if lo is not None and lo == lo and hi is not None else "")


def quality_rows(bundle) -> tuple[list[str], list[list[str]]]:
    q = quality_table(bundle.preds)
    head = ["task", "model", "strategy", "judged", "rule acc", "judge pass", "q0 (specificity)", "q1 (sensitivity)",
            "κ", "θ̂ (test half)", "rule acc (test half)"]
    rows = []
    for _, r in q.iterrows():
        kappa = "–" if r["kappa"] is None or r["kappa"] != r["kappa"] else (
            f"{r['kappa']:.2f}" + (f" [{r['kappa_low']:.2f}–{r['kappa_high']:.2f}]" if r["kappa_low"] == r["kappa_low"]
                                   and r["kappa_low"] is not None else ""))
        theta = _pct(r["theta"], r["theta_low"], r["theta_high"]) if r["theta"] is not None else (r["theta_note"] or "–")
        rows.append([r["task"], r["model"], r["strategy"], str(r["judged"]), _pct(r["rule_accuracy"]),
                     _pct(r["judge_pass_rate"]), _pct(r["q0"], r["q0_low"], r["q0_high"]),
                     _pct(r["q1"], r["q1_low"], r["q1_high"]), kappa, theta, _pct(r["test_rule_accuracy"])])
    return head, rows


def pairwise_rows(bundle) -> tuple[list[str], list[list[str]]]:
    head = ["task", "model", "A", "B", "items", "A wins", "B wins", "ties", "flip rate", "p (sign test)"]
    rows = []
    for run in bundle.runs:
        for s in run.get("pairwise") or []:
            rows.append([s["task"], s["model"], s["strategy_a"], s["strategy_b"], str(s["n"]), str(s["a_wins"]),
                         str(s["b_wins"]), str(s["ties"]), _pct(s["flip_rate"], s["flip_low"], s["flip_high"]),
                         "–" if s["p_value"] is None else f"{s['p_value']:.3g}"])
    return head, rows


def judge_sections(b: Any) -> list[tuple]:
    """(id, title, table, note) of the judge's quality and the pairwise preferences, where they have rows."""
    out = []
    for sid, title, fn, note in (("judge", "The judge against the rule", quality_rows, QUALITY_NOTE),
                                 ("pairwise", "Pairwise preferences", pairwise_rows, PAIRWISE_NOTE)):
        jhead, jrows = fn(b)
        if jrows:
            out.append((sid, title, lambda _b, h=jhead, r=jrows: (h, r), note))
    return out
