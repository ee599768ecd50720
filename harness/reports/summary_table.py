"""report.html's and report.md's summary table: which columns, how they are written, and how report.html
groups them (accuracy, cost, latency) with the less used ones behind a toggle (a checkbox and CSS: the
report has no script) so that the table fits a 1400 px window (tests/test_report.py measures it)."""
from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from .report_format import _col, _fit_error, _missing, _num, fnum, fusd, pct
from ..scoring.scorers import all_aggregates

_MS = lambda v: fnum(v, 3)  # noqa: E731 - seconds
ID, ACC, COST, LAT = "", "accuracy", "cost", "latency"  # the column groups of report.html's summary table
NAMES = ("task", "model", "strategy")  # columns whose long names may wrap after ":", ",", "=" or "@" (|wbr)


def _summary_columns() -> list[tuple[str, str | None, Any, str, bool]]:
    """(header, summary column or None for a computed cell, formatter, group, shown by default). The
    columns not shown by default sit behind report.html's "all columns" toggle; report.md has them all."""
    return [
        ("task", "task", str, ID, True), ("model", "model", str, ID, True), ("strategy", "strategy", str, ID, True),
        ("format", "format", str, ID, False), ("n", "n", str, ID, True),
        ("accuracy (95 % CI)", None, lambda r: "–" if math.isnan(_num(r.get("accuracy"))) else
         f"{pct(r.get('accuracy'))} [{pct(r.get('ci_low'), 0)}–{pct(r.get('ci_high'), 0)}]", ACC, True),
        *((a.header, a.column, pct if a.kind == "rate" else (lambda v: fnum(v, 3)), ACC, True)
          for a in all_aggregates()),
        ("constant answer", "constant_answer", lambda v: f"'{v}'", ACC, True),
        ("clusters", "n_clusters", lambda v: fnum(v, 0), ACC, False),
        ("clustered / naive SE", "se_ratio", lambda v: fnum(v, 2), ACC, False),
        ("parse fail", "parse_fail_rate", pct, ACC, True), ("errors", "errors", lambda v: fnum(v, 0), ACC, True),
        ("prompt tok", "mean_prompt_tokens", fnum, COST, True),
        ("completion tok", "mean_completion_tokens", fnum, COST, True),
        ("cached rows", "cached_rows", lambda v: fnum(v, 0) if _num(v) > 0 else "–", COST, False),
        ("engine s / example", "engine_s_per_example", _MS, COST, True),
        ("tok/s (batch)", "tokens_per_s", lambda v: fnum(v, 0), COST, False),
        ("$ / 1k examples", "cost_per_example_usd", lambda v: fusd(1000 * _num(v)), COST, True),
        ("$ total", "total_cost_usd", fusd, COST, False),
        ("probe latency p50 (s)", "probe_latency_p50_s", _MS, LAT, True),
        ("probe latency p95 (s)", "probe_latency_p95_s", _MS, LAT, False),
        ("probe TTFT p50 (s)", "probe_ttft_p50_s", _MS, LAT, True),
        ("probe TTFT p95 (s)", "probe_ttft_p95_s", _MS, LAT, False),
        ("est. latency p50 (s)", "est_latency_p50_s", _MS, LAT, True),
        ("est. latency p95 (s)", "est_latency_p95_s", _MS, LAT, False),
        ("est. TTFT p50 (s)", "est_ttft_p50_s", _MS, LAT, True),
        ("est. fit error", None, _fit_error, LAT, False),
        ("est. extrapolated", "est_extrapolated_share", pct, LAT, False),
        ("est. calibration", "est_calibration", str, LAT, False), ("no latency because", "latency_note", str, LAT, False),
        ("time in batch p50 (s)", "batch_latency_p50_s", _MS, LAT, False),
        ("time in batch p95 (s)", "batch_latency_p95_s", _MS, LAT, False),
    ]


def _kept_columns(summary: pd.DataFrame) -> list[tuple[str, str | None, Any, str, bool]]:
    """The columns with some known value (and the core ones always)."""
    core = {"task", "model", "strategy", "n", None, "parse_fail_rate", "errors"}
    # clusters and their SE ratio only where some cell's rows share items (n_clusters < n)
    shared = "n_clusters" in summary and (_col(summary, "n_clusters") < _col(summary, "n")).any()
    cols = _summary_columns()
    if not _col(summary, "est_fit_mape").notna().any():
        cols = [c for c in cols if c[0] != "est. fit error"]
    return [c for c in cols if c[1] in core or (
        c[1] in summary and summary[c[1]].notna().any() and (c[1] != "cached_rows" or _col(summary, c[1]).gt(0).any())
        and (c[1] not in ("n_clusters", "se_ratio") or shared))]


def summary_table(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows; optional columns appear only when some value is known."""
    keep = _kept_columns(summary)
    rows = []
    for r in summary.to_dict("records"):
        rows.append([fmt(r) if src is None else ("–" if _missing(r.get(src)) else fmt(r.get(src)))
                     for _, src, fmt, _, _ in keep])
    return [c[0] for c in keep], rows


def summary_layout(summary: pd.DataFrame) -> dict:
    """How report.html groups summary_table's columns: {"groups": [{"name", "shown", "all"}] in column order
    (`shown`: how many of the group's columns show by default, `all`: with the toggle on), "extra": one
    flag per column, True where it shows only with the toggle on}. Besides the columns marked so, the
    model (one model: the title names it) and the estimated latency where a probe measured it wait there."""
    keep = _kept_columns(summary)
    one_model = "model" in summary and summary["model"].nunique() <= 1  # the title names it
    probed = any(c[1] in ("probe_latency_p50_s", "probe_ttft_p50_s") for c in keep)  # measured beats estimated
    keep = [(h, src, fmt, group, main and not (src == "model" and one_model)
             and not (probed and str(src).startswith("est_"))) for h, src, fmt, group, main in keep]
    groups: list[dict] = []
    for _, _, _, group, main in keep:
        if not groups or groups[-1]["name"] != group:
            groups.append({"name": group, "shown": 0, "all": 0})
        groups[-1]["all"] += 1
        groups[-1]["shown"] += int(main)
    return {"groups": groups, "extra": [not c[4] for c in keep], "names": [c[1] in NAMES for c in keep]}


def wbr(text: Any) -> Any:
    """Escaped text with a line-break opportunity (<wbr>) after each ":", ",", "=" and "@", so that a long
    strategy name (zero_shot:answer_mode=loglikelihood) can wrap in a narrow column.

    >>> str(wbr("few_shot:k=3<b>"))
    'few_shot:<wbr>k=<wbr>3&lt;b&gt;'
    """
    from markupsafe import Markup, escape

    return Markup("").join(escape(part) + (Markup("<wbr>") if part[-1:] in ":,=@" else "")
                           for part in re.split(r"(?<=[:,=@])(?=.)", str(text)))
