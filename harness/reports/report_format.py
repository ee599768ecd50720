"""How the report writes numbers: percentages, p-values, dollars, and '–' for a missing value."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v


def pct(x: Any, digits: int = 1) -> str:
    v = _num(x)
    return "–" if math.isnan(v) else f"{100 * v:.{digits}f} %"


def fnum(x: Any, digits: int = 1) -> str:
    v = _num(x)
    return "–" if math.isnan(v) else f"{v:,.{digits}f}"


def fp(p: Any) -> str:
    v = _num(p)
    if math.isnan(v):
        return "–"
    return "< 0.001" if v < 0.001 else (f"{v:.3f}" if v < 0.01 else f"{v:.2f}")


def fusd(x: Any) -> str:
    v = _num(x)
    return "–" if math.isnan(v) else f"${v:.4g}"


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(df[name], errors="coerce") if name in df else pd.Series(np.nan, index=df.index)


def with_totals(summary: pd.DataFrame) -> pd.DataFrame:
    s = summary.copy()
    pt, ct = _col(s, "mean_prompt_tokens"), _col(s, "mean_completion_tokens")
    s["mean_total_tokens"] = (pt.fillna(0) + ct.fillna(0)).where(pt.notna() | ct.notna())
    return s


MEASURES_NOTE = (  # the report's definitions of its time and cost columns (docs/measures.md)
    "Probe latency / TTFT: single-request latency, measured by sending a few items of each strategy "
    "one at a time to the engine (--latency-probe). Est. latency / TTFT: single-request latency ESTIMATED "
    "from each row's token counts by the latency model (a + b·prompt + c·output tokens) fitted on a few "
    "requests sent one at a time after the batch; est. fit error = its leave-one-out error on those "
    "requests; est. extrapolated = rows outside the calibrated prompt or context range. Engine s / example: "
    "throughput cost, the measured "
    "wall time of the strategy's own batched engine calls per example; tok/s is prompt + completion "
    "tokens over that time. $ / 1k examples: engine s × the hourly price (self-hosted), else token "
    "prices. Time in batch: arrival → last token inside the batch, queueing included (not a latency). "
    "Cached rows (answered from the request cache) are in none of the time or cost figures. "
    "See docs/measures.md.")
