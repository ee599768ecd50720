"""The prompt-engineering matrix: per task, rows (template, strategy) x columns (model), one cell per
(template, strategy, model) with its accuracy and CI, cost per example and latency; paired tests
between the cells on the same items; and the verdict over all cells.

    cells = cell_table(preds, summary)        # one row per task x strategy x model
    pairs = cell_pairs(preds)                 # every pair of cells of a task, Holm over the task's pairs
    matrix_verdicts(summary, pairs)           # decisions over all cells (harness/reports/matrix_verdicts.py)

Statistics are harness/reports/paired.py's (score test, Tango interval at the Bonferroni level, Holm); the family corrected is
every pair of cells of one task (models, templates and strategies together).
"""
from __future__ import annotations

import math
from itertools import combinations

import pandas as pd

from .matrix_verdicts import matrix_verdicts
from .paired import _ok_rows
from .report_format import _col, _num, fp, fusd, md_table, md_text, pct, shown_latency, with_totals

ALPHA = 0.05
MAX_CELL_EXAMPLES = 200  # per cell in report.html: every failure first, then correct ones, up to this
CELL_PAIR_COLUMNS = ["task", "strategy_a", "model_a", "strategy_b", "model_b", "n", "acc_a", "acc_b", "diff",
                     "ci_low", "ci_high", "p_mcnemar", "p_holm"]
NOTE = ("Rows are (template, strategy), columns are models; each cell: accuracy with its 95 % Wilson CI, "
        "cost per example ($ when priced, else prompt + completion tokens) and single-request latency p50: "
        "the direct probe's when probed, else the latency model's estimate (est., with how it was calibrated), "
        "else '—' with the reason; never the time in batch. Colour: accuracy (red 0 % → green 100 %). "
        "▼row / ▼col: significantly worse than the best cell of its row / column (score test on the "
        "items both answered, Holm over every pair of cells of the task, p < 0.05).")


def _templates(preds: pd.DataFrame) -> dict[tuple, tuple[str, str]]:
    """(task, strategy) -> (template name(s), short content hash(es)) as the rows record them."""
    out = {}
    if preds.empty or "template" not in preds:
        return out
    hashes = preds["template_hash"] if "template_hash" in preds else pd.Series("", index=preds.index)
    for (t, s), g in preds.assign(_h=hashes).groupby(["task", "strategy"], sort=False):
        names = sorted({str(x) for x in g["template"].dropna()})
        hs = sorted({str(x)[:8] for x in g["_h"].dropna() if str(x)})
        out[(t, s)] = ("+".join(names) or "–", "+".join(hs))
    return out


def cell_table(preds: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, strategy, model) cell: template, template_hash, n, accuracy, ci_low, ci_high,
    cost (and cost_unit: 'usd' or 'tokens', one unit per task), latency_s, latency_kind and latency_text
    (report_format.shown_latency: probe, else estimate, else none with the reason)."""
    if summary.empty:
        return pd.DataFrame()
    s = with_totals(summary)
    s = s[_col(s, "accuracy").notna()].copy()
    if s.empty:  # every row failed: no accuracy to put in a cell
        return pd.DataFrame()
    tmpl = _templates(preds)
    s["template"] = [tmpl.get((t, st), ("–", ""))[0] for t, st in zip(s["task"], s["strategy"])]
    s["template_hash"] = [tmpl.get((t, st), ("–", ""))[1] for t, st in zip(s["task"], s["strategy"])]
    out = []
    for task, g in s.groupby("task", sort=True):
        usd = bool(_col(g, "cost_per_example_usd").gt(0).any())
        g = g.assign(cost=_col(g, "cost_per_example_usd" if usd else "mean_total_tokens"),
                     cost_unit="usd" if usd else "tokens")
        shown = [shown_latency(r) for r in g.to_dict("records")]
        g = g.assign(latency_s=[x[0] for x in shown], latency_kind=[x[1] for x in shown],
                     latency_text=[x[2] for x in shown])
        out.append(g)
    cols = ["task", "template", "template_hash", "strategy", "model", "n", "accuracy", "ci_low", "ci_high", "cost",
            "cost_unit", "latency_s", "latency_kind", "latency_text", "parse_fail_rate", "errors"]
    df = pd.concat(out, ignore_index=True)
    return df[[c for c in cols if c in df.columns]].sort_values(["task", "template", "strategy", "model"],
                                                                 ignore_index=True)


def cell_pairs(preds: pd.DataFrame, *, n_boot: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Every pair of (strategy, model) cells of a task, on the items both answered without an error
    (inner join on example_id). Within a pair, cell a has the higher accuracy (ties: by name).
    The same method as pairs.csv (harness/reports/paired.py): the score test, Tango's interval at the
    Bonferroni level over the task's cell pairs, Holm's p, and the interval cut at 0 where Holm rejects.
    (`n_boot`, `seed`: unused since the bootstrap was replaced.)"""
    from .paired import _per_item, adjust_family, pair_test

    if preds.empty:
        return pd.DataFrame(columns=CELL_PAIR_COLUMNS)
    ok = _ok_rows(preds).copy()
    ok["correct"] = ok["correct"].fillna(False).astype(bool).astype(float)
    rows = []
    for task, g in ok.groupby("task", sort=True):
        per = {k: _per_item(d) for k, d in g.groupby(["strategy", "model"], sort=True)}
        order = sorted(per, key=lambda k: (-per[k].mean(), k))
        fam = [{"task": task, "strategy_a": ca[0], "model_a": ca[1], "strategy_b": cb[0], "model_b": cb[1],
                **pair_test(per[ca], per[cb])} for ca, cb in combinations(order, 2)]
        rows += adjust_family(fam)
    return pd.DataFrame(rows, columns=CELL_PAIR_COLUMNS + ["level", "method", "only_a", "only_b"])


def _p(pairs: pd.DataFrame, task: str, x: tuple, y: tuple) -> float:
    """Holm p of cells x = (strategy, model) and y on `task` (NaN when not compared)."""
    m = pairs[(pairs["task"] == task)
              & (((pairs["strategy_a"] == x[0]) & (pairs["model_a"] == x[1])
                  & (pairs["strategy_b"] == y[0]) & (pairs["model_b"] == y[1]))
                 | ((pairs["strategy_a"] == y[0]) & (pairs["model_a"] == y[1])
                    & (pairs["strategy_b"] == x[0]) & (pairs["model_b"] == x[1])))]
    return _num(m["p_holm"].iloc[0]) if len(m) else float("nan")


def _best(g: pd.DataFrame) -> pd.Series:
    return g.sort_values(["accuracy", "cost", "strategy", "model"], ascending=[False, True, True, True]).iloc[0]


def mark_cells(cells: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Adds worse_than_row / worse_than_col: the cell's accuracy is below the best of its row (same
    task and strategy, other models) / column (same task and model) and the pair's Holm p < ALPHA."""
    cells = cells.copy()
    cells["worse_than_row"] = False
    cells["worse_than_col"] = False
    for keys, flag in ((["task", "strategy"], "worse_than_row"), (["task", "model"], "worse_than_col")):
        for _, g in cells.groupby(keys):
            b = _best(g)
            for i, r in g.iterrows():
                if r["accuracy"] < b["accuracy"] and \
                        _p(pairs, r["task"], (r["strategy"], r["model"]), (b["strategy"], b["model"])) < ALPHA:
                    cells.loc[i, flag] = True
    return cells


def _cost_text(v: float, unit: str) -> str:
    return "–" if math.isnan(_num(v)) else (f"{fusd(v)}/ex" if unit == "usd" else f"{_num(v):,.0f} tok/ex")


def wanted(cells: pd.DataFrame) -> bool:
    """Show the matrix when some task has several models or several templates."""
    if cells.empty:
        return False
    return bool(cells.groupby("task").agg(m=("model", "nunique"), t=("template", "nunique"))
                .pipe(lambda d: ((d["m"] > 1) | (d["t"] > 1)).any()))


def _colour(acc: float) -> str:
    """Red (0 %) through yellow to green (100 %), light enough for dark text."""
    h = 0 if math.isnan(acc) else round(120 * max(0.0, min(1.0, acc)))
    return f"hsl({h},70%,82%)"


def _status(r) -> str:
    if isinstance(r.get("error"), str) and r.get("error"):
        return "error"
    if r.get("parse_ok") is False or (r.get("parse_ok") is not None and not pd.isna(r.get("parse_ok"))
                                      and not bool(r.get("parse_ok"))):
        return "parse"
    return "ok" if bool(r.get("correct")) and not pd.isna(r.get("correct")) else "wrong"


MAX_TEXT = 4000


def _clip(text) -> str:
    t = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    return t if len(t) <= MAX_TEXT else t[:MAX_TEXT] + f"\n… [{len(t) - MAX_TEXT} more characters]"


def _messages(prompt) -> list[dict]:
    import json

    try:
        return [{"role": str(m.get("role", "?")), "content": _clip(m.get("content", ""))} for m in json.loads(prompt)]
    except (json.JSONDecodeError, TypeError, AttributeError):
        return [{"role": "?", "content": _clip(prompt)}] if _clip(prompt) else []


def _cell_examples(g: pd.DataFrame) -> list[dict]:
    rows = []
    for r in g.to_dict("records"):
        st = _status(r)
        rows.append({"id": str(r.get("example_id")), "status": st, "messages": _messages(r.get("prompt")),
                     "output": _clip(r.get("output")), "answer": _clip(r.get("answer")),
                     "gold": _clip(r.get("gold")), "error": _clip(r.get("error")) if st == "error" else ""})
    rows.sort(key=lambda e: e["status"] == "ok")  # failures first
    return rows[:MAX_CELL_EXAMPLES]


def matrix_context(preds: pd.DataFrame, summary: pd.DataFrame) -> dict | None:
    """Everything report.html and report.md show of the matrix (None when there is nothing to cross)."""
    cells = cell_table(preds, summary)
    if not wanted(cells):
        return None
    pairs = cell_pairs(preds)
    cells = mark_cells(cells, pairs)
    tasks = []
    k = 0
    for task, g in cells.groupby("task", sort=True):
        models = sorted(g["model"].unique())
        rows = []
        for (tmpl, strat), rg in g.groupby(["template", "strategy"], sort=True):
            by_model = {r["model"]: r for _, r in rg.iterrows()}
            row = {"template": tmpl, "hash": rg["template_hash"].iloc[0], "strategy": strat, "cells": []}
            for m in models:
                r = by_model.get(m)
                if r is None:
                    row["cells"].append(None)
                    continue
                k += 1
                ex = preds[(preds["task"] == task) & (preds["strategy"] == strat) & (preds["model"] == m)]
                examples = _cell_examples(ex)
                counts = {s: sum(e["status"] == s for e in examples) for s in ("ok", "wrong", "parse", "error")}
                row["cells"].append({
                    "id": f"cell-{k}", "model": m, "acc": pct(r["accuracy"]),
                    "ci": f"{pct(r['ci_low'], 0)}–{pct(r['ci_high'], 0)}", "n": int(r["n"]),
                    "cost": _cost_text(r["cost"], r["cost_unit"]),
                    "latency": r["latency_text"],
                    "colour": _colour(_num(r["accuracy"])), "worse_row": bool(r["worse_than_row"]),
                    "worse_col": bool(r["worse_than_col"]), "examples": examples, "counts": counts,
                    "shown": len(examples), "total": len(ex)})
            rows.append(row)
        tasks.append({"task": task, "models": models, "rows": rows})
    pair_rows = [[r["task"], f"{r['strategy_a']} · {r['model_a']}", f"{r['strategy_b']} · {r['model_b']}", str(r["n"]),
                  pct(r["acc_a"]), pct(r["acc_b"]), pct(r["diff"]), f"{pct(r['ci_low'])} … {pct(r['ci_high'])}",
                  fp(r["p_mcnemar"]), fp(r["p_holm"]), "significant" if _num(r["p_holm"]) < ALPHA else ""]
                 for r in pairs.to_dict("records")]
    return {"note": NOTE, "tasks": tasks, "verdicts": matrix_verdicts(summary, pairs), "cells": cells, "pairs": pairs,
            "pairs_head": ["task", "cell a", "cell b", "n", "acc a", "acc b", "diff", "95 % CI", "p McNemar",
                           "p Holm", ""], "pairs_rows": pair_rows}


def matrix_markdown(mx: dict | None) -> list[str]:
    """The matrix as Markdown tables (one per task) and its verdicts."""
    if not mx:
        return []
    parts = ["## Matrix: templates × strategies × models", "", mx["note"], ""]
    parts += [f"- {md_text(v['text'])}" for v in mx["verdicts"]] + [""]
    for t in mx["tasks"]:
        head = ["template", "strategy"] + list(t["models"])
        rows = []
        for r in t["rows"]:
            cells = []
            for c in r["cells"]:
                if c is None:
                    cells.append("–")
                    continue
                mark = (" ▼row" if c["worse_row"] else "") + (" ▼col" if c["worse_col"] else "")
                cells.append(f"{c['acc']} [{c['ci']}] · {c['cost']} · {c['latency']}{mark}")
            rows.append([f"{r['template']} ({r['hash']})", r["strategy"]] + cells)
        parts += [f"### {t['task']}", "", md_table(head, rows), ""]
    return parts
