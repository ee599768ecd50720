"""The forest plot of decisions.csv: per task, each cell's difference from the best cell with its
interval, the margin as a shaded band and the decision as the marker's colour (docs/statistics.md)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from .plots import Plot, _grid, _multi, _plot, variant_label

DECISION_COLORS = {"best": "#1f77b4", "non_inferior": "#2ca02c", "inferior": "#d62728",
                   "inconclusive": "#7f7f7f", "constant_answer": "#9467bd"}


def forest_plot(decisions: pd.DataFrame | None) -> list[Plot]:
    """Per task: each cell's difference from the best cell with its interval (at its stated level),
    the margin as a shaded band [-margin, 0], and the decision as the marker's colour."""
    if decisions is None or decisions.empty:
        return []
    d = decisions.copy()
    d["model"] = d["model"].astype(str)
    multi, tasks = _multi(d), sorted(d["task"].unique())
    fig, axes = _grid(len(tasks), row_h=1.0 + 0.45 * d.groupby("task").size().max())
    for ax, task in zip(axes, tasks):
        g = d[d["task"] == task].reset_index(drop=True)
        y = np.arange(len(g))[::-1]
        margin = float(g["margin"].iloc[0])
        ax.axvspan(-100 * margin, 0, color="#2ca02c", alpha=0.12, lw=0)
        ax.axvline(0, color="#444", lw=0.8)
        for yy, r in zip(y, g.to_dict("records")):
            col = DECISION_COLORS.get(r["decision"], "#000")
            x = 0.0 if r["decision"] in ("best", "constant_answer") or pd.isna(r["diff"]) else 100 * float(r["diff"])
            if not pd.isna(r["ci_low"]):
                ax.plot([100 * float(r["ci_low"]), 100 * float(r["ci_high"])], [yy, yy], color=col, lw=2)
            ax.plot([x], [yy], "o" if r["decision"] != "constant_answer" else "x", color=col, markersize=7)
        ax.set_yticks(y, [variant_label(r.cell, r.model, multi) for r in g.itertuples()])
        ax.set_xlabel(f"cell − best (accuracy points); band: margin {100 * margin:g}")
        ax.set_title(task)
        ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in DECISION_COLORS.items()
               if k in set(d["decision"])]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), fontsize=8,
               frameon=False)
    fig.tight_layout()
    return [_plot("plot-forest", "Decisions: each cell against the best",
                  "Difference from the best cell of the task and model, with its interval at the stated level "
                  "(Bonferroni over the task's pairs, cut at 0 where Holm rejects). Shaded: within the margin. "
                  "Colour: the decision (decisions.csv). A constant-answer cell is marked x at 0, not compared.", fig)]
