"""The matrix's verdict: per task, every (strategy, model) cell against the best one, with the decision rules
of decisions.csv (harness/reports/decisions.py) and the sentences of harness/reports/verdicts.py.

A cell is named "STRATEGY on MODEL"; the family is every cell of the task (models, templates and strategies
together: cell_pairs' Holm family), so a matrix verdict and the per-model verdicts of the same run may
decide the same pair differently, and the sentence says which family it corrected over. A cell that gives
one answer on >= 95 % of a fixed-label task's items is `constant_answer`: never best, never tied, never
recommended. "Not significantly worse" is not "as good": a cell is recommended only as best or non_inferior
(its whole interval above -margin)."""
from __future__ import annotations

import pandas as pd

from ..stats.decisions import DEFAULT_MARGIN
from .verdicts import verdicts

SEP = " on "
ALL = "all models"
# the per-model sentences say "strategy"; over a matrix the thing compared is a cell
WORDS = (("cheapest strategy", "cheapest cell"), ("No cheaper strategy", "No cheaper cell"),
         ("every strategy gives", "every cell gives"), ("no best strategy", "no best cell"),
         ("items per strategy", "items per cell"), ("only strategy compared", "only cell compared"),
         ("no strategy answered", "no cell answered"), ("every cheaper one", "every cheaper cell"))


def cell_name(strategy: str, model: str) -> str:
    return f"{strategy}{SEP}{model}"


def matrix_verdicts(summary: pd.DataFrame, pairs: pd.DataFrame, *, margin: float = DEFAULT_MARGIN) -> list[dict]:
    """One verdict per task over all its cells. `summary`: summary.csv's rows (with constant_answer when the
    run computed it); `pairs`: cell_pairs(preds). Keys: task, best ((strategy, model) or None), cheapest,
    decisions ({(strategy, model): decision}), text."""
    if summary.empty or "accuracy" not in summary:
        return []
    cells = {cell_name(s, m): (s, m) for s, m in zip(summary["strategy"], summary["model"])}
    s = summary.assign(strategy=[cell_name(a, b) for a, b in zip(summary["strategy"], summary["model"])], model=ALL)
    p = pairs.copy()
    if len(p):
        p = p.assign(model=ALL, strategy_a=[cell_name(a, b) for a, b in zip(p["strategy_a"], p["model_a"])],
                     strategy_b=[cell_name(a, b) for a, b in zip(p["strategy_b"], p["model_b"])])
    else:
        p = pd.DataFrame(columns=["task", "model", "strategy_a", "strategy_b", "n", "diff", "ci_low", "ci_high",
                                  "p_holm", "level", "method", "only_a", "only_b"])
    out = []
    for v in verdicts(s, p, margin=margin):
        task = v["task"]
        here = summary[summary["task"] == task]
        k, m = len(here), here["model"].nunique()
        text = v["text"].replace(f"On {task} ({ALL}), ",
                                 f"On {task}, over its {k} cells ({m} model{'s' if m != 1 else ''}; Holm over "
                                 f"every pair of them), ", 1)
        for a, b in WORDS:
            text = text.replace(a, b)
        out.append({"task": task, "best": cells.get(v["best"]), "cheapest": cells.get(v["cheapest"]),
                    "decisions": {cells[c]: d for c, d in v["decisions"].items() if c in cells}, "text": text})
    return out
