"""How the report writes numbers: percentages, p-values, dollars, and '–' for a missing value."""
from __future__ import annotations

import math
import re
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


# What Markdown (CommonMark / GFM) would read as markup in a line of text; everything else is written as is,
# so "p < 0.001" stays "p < 0.001" (html.escape wrote "&lt;"). Model output and dataset text stay inert:
# a "<" that would open raw HTML or an autolink and an "&" that would start an entity are escaped.
_MD_BACKSLASH = re.compile(r"\\(?=[!-/:-@\[-`{-~])")  # a backslash would escape the punctuation after it
_MD_ENTITY = re.compile(r"&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{0,31};)")
_MD_TAG = re.compile(r"<(?=[A-Za-z/!?])")


def md_text(x: Any) -> str:
    """`x` as one line of Markdown (a table cell, a list item): nothing escaped that Markdown shows as is;
    a `<` that would open HTML, an `&` that would start an entity, a backslash before punctuation and `|`
    are escaped, so the text renders as written and never as markup (a code span or emphasis still can).

    >>> print(md_text("p < 0.001 & a|b"))
    p < 0.001 & a\\|b
    >>> md_text("<script>x</script> &amp;")
    '&lt;script>x&lt;/script> &amp;amp;'
    """
    t = _MD_BACKSLASH.sub(r"\\\\", str(x))
    t = _MD_TAG.sub("&lt;", _MD_ENTITY.sub("&amp;", t))
    return t.replace("|", "\\|").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def md_table(head: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; every cell through md_text."""
    lines = ["| " + " | ".join(md_text(h) for h in head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(md_text(c) for c in r) + " |" for r in rows])


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
