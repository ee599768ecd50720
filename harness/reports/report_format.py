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
    "from each row's token counts by the latency model (a + b·prompt + c·(output − 1) tokens, a, b, c ≥ 0) "
    "fitted on a few "
    "requests sent one at a time after the batch; est. fit error = its leave-one-out error on those "
    "requests (flagged over 20 %); est. extrapolated = rows outside the calibrated prompt or context range; "
    "est. calibration = how it was calibrated (in this run, reduced to 3 requests in a small run, or reused "
    "from this machine's cached calibration, with its date). Engine s / example: "
    "throughput cost, the measured "
    "wall time of the strategy's own batched engine calls per example; tok/s is prompt + completion "
    "tokens over that time. $ / 1k examples: engine s × the hourly price (self-hosted), else token "
    "prices. Time in batch: arrival → last token inside the batch, queueing included (not a latency). "
    "Cached rows (answered from the request cache) are in none of the time or cost figures. "
    "See docs/measures.md.")


# -- the one single-request latency every view shows (docs/measures.md) ----------------------
def _calibrated_on(label: str) -> str:
    import re

    m = re.search(r"calibrated (\d{4}-\d{2}-\d{2})", label)
    return m.group(1) if m else ""


def shown_latency(r: Any) -> tuple[float, str, str]:
    """(seconds, kind, text) of a summary row's single-request latency p50, as the matrix, `harness view`, the
    Pareto plot and the verdicts show it: the direct probe's, else the latency model's estimate (how it was
    calibrated: in this run, reduced, or reused with its date), else NaN and '—' with the reason. The time in
    batch is never shown as a latency.

    >>> shown_latency({"probe_latency_p50_s": 1.5, "est_latency_p50_s": 1.2})
    (1.5, 'probe p50', '1.50 s probe')
    >>> shown_latency({"latency_note": "all rows answered from the request cache"})[2]
    'latency — (all rows answered from the request cache)'
    """
    get = r.get if hasattr(r, "get") else (lambda k: None)
    probe, est = _num(get("probe_latency_p50_s")), _num(get("est_latency_p50_s"))
    if not math.isnan(probe):
        return probe, "probe p50", f"{fnum(probe, 2)} s probe"
    if not math.isnan(est):
        label = "" if _missing(get("est_calibration")) else str(get("est_calibration"))
        how = ("est., reduced calibration" if "reduced" in label else
               f"est., calibrated {_calibrated_on(label)}" if "reused" in label else "est.")
        return est, "estimate p50", f"{fnum(est, 2)} s {how}"
    note = get("latency_note")
    reason = "no latency measure in this run" if _missing(note) or not str(note) else str(note)
    return float("nan"), "none", f"latency — ({reason})"


def latency_phrase(r: Any) -> str:
    """'latency p50 1.20 s est.' or 'latency — (reason)': for the verdict sentences."""
    s, _, text = shown_latency(r)
    return text if math.isnan(s) else f"latency p50 {text}"


def _fit_error(r: dict) -> str:
    """The latency model's leave-one-out error, flagged above LOO_FLAG (docs/measures.md)."""
    from ..runs.latency_model import LOO_FLAG

    v = _num(r.get("est_fit_mape"))
    if math.isnan(v):
        return "–"
    return pct(v) + (f" ⚠ over {LOO_FLAG:.0%}: unreliable" if v > LOO_FLAG else "")


def _relabel(frames: list[pd.DataFrame], run_ids: list[str], like: list[pd.DataFrame] | None = None) -> list[pd.DataFrame]:
    """Where the same task x strategy x model is in several runs (two template versions, say), the
    strategy becomes 'strategy@run_id' so the runs stay apart and are compared pairwise. `like`: decide
    which groups are shared from these frames instead (the probes follow the predictions)."""
    keys = [set(map(tuple, f[["task", "strategy", "model"]].astype(str).to_numpy())) if not f.empty else set()
            for f in (like if like is not None else frames)]
    counts: dict[tuple, int] = {}
    for ks in keys:
        for k in ks:
            counts[k] = counts.get(k, 0) + 1
    dup = {k for k, c in counts.items() if c > 1}
    if not dup:
        return frames
    out = []
    for f, rid in zip(frames, run_ids):
        if f.empty:
            out.append(f)
            continue
        f = f.copy()
        hit = [tuple(x) in dup for x in f[["task", "strategy", "model"]].astype(str).to_numpy()]
        f.loc[hit, "strategy"] = f.loc[hit, "strategy"].astype(str) + "@" + rid
        out.append(f)
    return out
