"""The report's plots, as base64 PNG strings ready for `<img src="data:image/png;base64,...">`.

Figures are built with matplotlib's object API on the Agg canvas (`Figure` + `FigureCanvasAgg`), never
through pyplot, so no global figure registry fills up and no GUI backend is touched; `_png` also
clears each figure once it is encoded. Each function returns a list of `Plot` (empty when its data
is missing), so the report shows only the plots that apply to a run.
"""
from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from .paired import pareto_front

DPI = 80
FRONT_COLOR, DOMINATED_COLOR = "#1f77b4", "#9a9a9a"
MARKERS = "osD^vP*Xh<>p"


@dataclass(frozen=True)
class Plot:
    id: str
    title: str
    caption: str
    png_b64: str
    overlaps: tuple[str, ...] = ()  # pairs of text elements (or a text and a legend) whose boxes intersect


def _texts(fig: Figure, renderer) -> list[tuple[str, object, object]]:
    """(name, window bbox, owner) of every visible, non-empty text and every legend frame of the figure."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        legend = ax.get_legend()
        skip = set(map(id, legend.get_texts())) if legend else set()
        shown_ticks = []
        for axis in (ax.xaxis, ax.yaxis):  # tick labels outside the view limits exist but are not drawn
            lo, hi = sorted(axis.get_view_interval())
            pad = 1e-9 * max(1.0, abs(hi - lo))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                labels = (tick.label1, tick.label2)
                skip.update(map(id, labels))
                if lo - pad <= tick.get_loc() <= hi + pad:
                    shown_ticks.extend(lb for lb in labels if lb.get_visible())
        texts = [t for t in ax.findobj(Text) if id(t) not in skip] + shown_ticks
        for t in texts:
            if t.get_visible() and str(t.get_text()).strip():
                out.append((f"{ax.get_title() or 'axes'}: '{t.get_text()}'", t.get_window_extent(renderer), ax))
        if legend is not None and legend.get_visible():
            out.append((f"{ax.get_title() or 'axes'}: legend", legend.get_window_extent(renderer), ax))
    for t in fig.texts:
        if t.get_visible() and str(t.get_text()).strip():
            out.append((f"figure: '{t.get_text()}'", t.get_window_extent(renderer), fig))
    for legend in fig.legends:
        out.append(("figure: legend", legend.get_window_extent(renderer), fig))
    return out


def text_overlaps(fig: Figure) -> list[str]:
    """Every pair of text elements (titles, axis and tick labels, point labels) and legends whose
    rendered bounding boxes intersect (a pixel of tolerance). Empty = readable."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    items = _texts(fig, canvas.get_renderer())
    bad = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            (na, a, _), (nb, b, _) = items[i], items[j]
            if a.width <= 0 or b.width <= 0:
                continue
            if a.x0 + 1 < b.x1 and b.x0 + 1 < a.x1 and a.y0 + 1 < b.y1 and b.y0 + 1 < a.y1:
                bad.append(f"{na} overlaps {nb}")
    return bad


def _png(fig: Figure) -> tuple[str, tuple[str, ...]]:
    FigureCanvasAgg(fig)
    overlaps = tuple(text_overlaps(fig))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    fig.clear()  # release the artists now (the Figure is not registered with pyplot)
    return base64.b64encode(buf.getvalue()).decode("ascii"), overlaps


def _plot(pid: str, title: str, caption: str, fig: Figure) -> Plot:
    png, overlaps = _png(fig)
    return Plot(pid, title, caption, png, overlaps)


def _grid(n: int, *, width: float = 10.0, row_h: float = 3.6, ncols: int = 2):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width, row_h * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def variant_label(strategy: str, model: str, multi_model: bool) -> str:
    return f"{strategy} ({model})" if multi_model else str(strategy)


def _multi(df: pd.DataFrame) -> bool:
    return "model" in df and df["model"].nunique() > 1


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series(np.nan, index=df.index)


# -- accuracy -------------------------------------------------------------------------------
def accuracy_plot(summary: pd.DataFrame) -> list[Plot]:
    """Accuracy with its CI per strategy, plus every rate the scorer table aggregates for these rows
    (acc_norm, acc strict, JSON valid, ...) as hollow markers named in one legend below the panels."""
    s = summary[_num(summary, "accuracy").notna()]
    if s.empty:
        return []
    from ..scoring.scorers import all_aggregates

    extra = [a for a in all_aggregates() if a.kind == "rate" and _num(s, a.column).notna().any()]
    multi, tasks = _multi(s), sorted(s["task"].unique())
    fig, axes = _grid(len(tasks), row_h=0.6 + 0.45 * s.groupby("task").size().max())
    for ax, task in zip(axes, tasks):
        g = s[s["task"] == task].sort_values("accuracy")
        acc = g["accuracy"].to_numpy(float)
        lo, hi = _num(g, "ci_low").to_numpy(float), _num(g, "ci_high").to_numpy(float)
        err = np.nan_to_num(np.vstack([acc - lo, hi - acc]), nan=0.0).clip(min=0)
        y = np.arange(len(g))
        ax.errorbar(acc, y, xerr=err, fmt="o", color=FRONT_COLOR, capsize=3, label="accuracy (95 % Wilson CI)")
        for k, a in enumerate(extra):
            ax.plot(_num(g, a.column).to_numpy(float), y, MARKERS[(k + 1) % len(MARKERS)], color=f"C{k + 1}",
                    markerfacecolor="none", markersize=7, label=a.header)
        ax.set_yticks(y, [variant_label(r.strategy, r.model, multi) for r in g.itertuples()])
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("rate over items without an error" if extra else "accuracy (95 % Wilson CI)")
        ax.set_title(task)
        ax.grid(axis="x", alpha=0.3)
    if extra:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels), fontsize=8,
                   frameon=False)
    fig.tight_layout()
    return [_plot("plot-accuracy", "Accuracy by strategy",
                  "Points are accuracy over the items answered without an error; bars are 95 % Wilson intervals."
                  + (" Hollow markers: the other rates of the scorer table." if extra else ""), fig)]


def _dodge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points at the same (x, y) (a tie) are spread sideways by 1.5 % of the x range so each stays visible."""
    span = (np.nanmax(x) - np.nanmin(x)) if len(x) > 1 else 0.0
    step = 0.015 * (span if span > 0 else max(abs(float(np.nanmax(x))), 1.0))
    out = x.astype(float).copy()
    groups: dict[tuple[float, float], list[int]] = {}
    for i, key in enumerate(zip(np.round(x, 9), np.round(y, 9))):
        groups.setdefault(key, []).append(i)
    for idx in groups.values():
        for k, i in enumerate(idx):
            out[i] += (k - (len(idx) - 1) / 2) * step
    return out


def tradeoff_plot(summary: pd.DataFrame, xcol: str, xlabel: str, *, pid: str, title: str, how: str = "") -> list[Plot]:
    """Accuracy vs a cost (tokens, latency or $): the Pareto frontier (lower cost, higher accuracy)
    is joined by a line. Each strategy has its own marker and colour and is named in a legend outside
    the axes (no label is drawn among the points, so none can overprint another or the legend);
    dominated strategies are hollow and say '(dominated)'; tied points are spread sideways."""
    x_all = _num(summary, xcol)
    s = summary[x_all.notna() & _num(summary, "accuracy").notna()].copy()
    if s.empty or not (_num(s, xcol) > 0).any():
        return []
    s["_x"] = _num(s, xcol)
    multi, tasks = _multi(s), sorted(s["task"].unique())
    fig, axes = _grid(len(tasks), ncols=1, width=9.0, row_h=3.4)
    for ax, task in zip(axes, tasks):
        g = s[s["task"] == task].sort_values(["strategy", "model"]).reset_index(drop=True)
        front = pareto_front(list(zip(g["_x"], g["accuracy"])))
        lo, hi = _num(g, "ci_low").to_numpy(float), _num(g, "ci_high").to_numpy(float)
        acc = g["accuracy"].to_numpy(float)
        err = np.nan_to_num(np.vstack([acc - lo, hi - acc]), nan=0.0).clip(min=0)
        xs = _dodge(g["_x"].to_numpy(float), acc)
        for i, r in g.iterrows():
            on = i in front
            color = f"C{i % 10}"
            name = variant_label(r["strategy"], r["model"], multi) + ("" if on else " (dominated)")
            ax.errorbar(xs[i], acc[i], yerr=err[:, i:i + 1], fmt=MARKERS[i % len(MARKERS)], color=color, capsize=2,
                        markersize=7, markerfacecolor=color if on else "white", markeredgewidth=1.5, label=name)
        order = sorted(front, key=lambda i: (g.loc[i, "_x"], -acc[i]))
        ax.step(g.loc[order, "_x"].to_numpy(float), acc[order], where="post", color=FRONT_COLOR, lw=1.2,
                alpha=0.6, label="Pareto frontier", zorder=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.05)
        ax.margins(x=0.1)
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, frameon=False)
    fig.tight_layout()
    return [_plot(pid, title, (how + " " if how else "") + "Filled markers are on the Pareto frontier (no other "
                  "strategy is both cheaper and more accurate); hollow markers are dominated. Vertical bars: 95 % CIs; "
                  "strategies at the same point are spread sideways. The frontier uses point estimates; see the "
                  "significance table before trusting small gaps.", fig)]


# -- latency --------------------------------------------------------------------------------
def latency_plot(preds: pd.DataFrame, col: str = "latency_s", *, xlabel: str = "single-request latency (s)",
                 title: str = "Single-request latency (latency probe)", caption: str = "") -> list[Plot]:
    """Distributions of a per-request time by strategy: the probe's latency, or (runs without a probe)
    the request time in the batch, labelled as such."""
    lat = _num(preds, col)
    p = preds.assign(_lat=lat)[lat.notna()]
    if p.empty or not (p["_lat"] > 0).any():
        return []
    multi, tasks = _multi(p), sorted(p["task"].unique())
    fig, axes = _grid(len(tasks), row_h=0.8 + 0.45 * p.groupby("task")["strategy"].nunique().max())
    for ax, task in zip(axes, tasks):
        g = p[p["task"] == task]
        groups = sorted(g.groupby(["strategy", "model"])["_lat"], key=lambda kv: kv[1].median())
        data = [v.to_numpy(float) for _, v in groups]
        try:
            ax.boxplot(data, orientation="horizontal")
        except TypeError:  # matplotlib < 3.10
            ax.boxplot(data, vert=False)
        ax.set_yticks(range(1, len(groups) + 1), [variant_label(s, m, multi) for (s, m), _ in groups])
        ax.set_xlabel(xlabel)
        ax.set_title(task)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return [_plot("plot-latency", title, caption + " Box: quartiles; whiskers: 1.5 IQR; points: outliers.", fig)]


# -- self-consistency -----------------------------------------------------------------------
def majk_plot(majk: pd.DataFrame) -> list[Plot]:
    if majk is None or majk.empty or "maj_at_k" not in majk:
        return []
    multi, tasks = _multi(majk), sorted(majk["task"].unique())
    fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks):
        for (strat, model), g in majk[majk["task"] == task].groupby(["strategy", "model"]):
            g = g.sort_values("k")
            line = ax.plot(g["k"], g["maj_at_k"], marker="o", label=variant_label(strat, model, multi))[0]
            ax.fill_between(g["k"], _num(g, "ci_low"), _num(g, "ci_high"), color=line.get_color(), alpha=0.15)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("k (samples voted)")
        ax.set_ylabel("maj@k")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return [_plot("plot-majk", "Self-consistency: maj@k",
                 "Expected majority-vote accuracy over all k-subsets of the samples, with a bootstrap 95 % CI "
                 "over examples.", fig)]


# -- guided vs free -------------------------------------------------------------------------
def _validity(g: pd.DataFrame) -> float:
    sv = g["schema_valid"] if "schema_valid" in g else pd.Series(dtype=object)
    if sv.notna().any():
        return float(sv.fillna(False).astype(bool).mean())
    return float(g["parse_ok"].fillna(False).astype(bool).mean())


def guided_plot(preds: pd.DataFrame) -> list[Plot]:
    if "guided" not in preds:
        return []
    p = preds[~(preds["error"].notna() & (preds["error"].astype(str) != ""))].copy()
    p["guided"] = p["guided"].fillna(False).astype(bool)
    tasks = sorted(t for t, g in p.groupby("task") if g["guided"].nunique() == 2)
    if not tasks:
        return []
    multi = _multi(p)
    fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks):
        g = p[p["task"] == task]
        keys = sorted(g.groupby(["strategy", "model", "guided"]).groups, key=lambda k: (k[1], k[0]))
        labels, val, acc = [], [], []
        for s, m, gd in keys:
            sub = g[(g["strategy"] == s) & (g["model"] == m) & (g["guided"] == gd)]
            labels.append(variant_label(s, m, multi) + (" [guided]" if gd else " [free]"))
            val.append(_validity(sub))
            acc.append(float(sub["correct"].fillna(False).astype(bool).mean()))
        y = np.arange(len(keys))
        ax.barh(y - 0.2, val, height=0.4, color="#2ca02c", label="valid output")
        ax.barh(y + 0.2, acc, height=0.4, color=FRONT_COLOR, label="accuracy")
        ax.set_yticks(y, labels)
        ax.set_xlim(0, 1.02)
        ax.set_title(task)
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return [_plot("plot-guided", "Guided vs free decoding",
                 "Valid output: schema-valid JSON for JSON tasks, otherwise an extractable answer. "
                 "Accuracy: correct answers over items without an error.", fig)]


# -- context-length sweep -------------------------------------------------------------------
def context_plot(preds: pd.DataFrame) -> list[Plot]:
    """Accuracy and median latency vs prompt length (power-of-two buckets) on needle* tasks
    (needle_haystack, and the sweep's needle_256 ... needle_1800)."""
    p = preds[preds["task"].astype(str).str.startswith("needle")].copy()
    p["_pt"] = _num(p, "prompt_tokens")
    p = p[p["_pt"] > 0]
    if p.empty:
        return []
    p["bucket"] = (2 ** np.round(np.log2(p["_pt"]))).astype(int)
    if p["bucket"].nunique() < 2:
        return []
    p["_ok"] = p["correct"].fillna(False).astype(bool)
    p["_lat"] = _num(p, "batch_latency_s")
    multi = _multi(p)
    has_lat = bool((p["_lat"] > 0).any())
    fig, axes = _grid(2 if has_lat else 1)
    panels = [("accuracy", "_ok", "mean")] + ([("median time in batch (s)", "_lat", "median")] if has_lat else [])
    for ax, (ylabel, col, how) in zip(axes, panels):
        for (s, m), g in p.groupby(["strategy", "model"]):
            pts = g.groupby("bucket")[col].agg(how)
            ax.plot(pts.index, pts.to_numpy(float), marker="o", label=variant_label(s, m, multi))
        ax.set_xscale("log", base=2)
        buckets = sorted(p["bucket"].unique())
        ax.set_xticks(buckets, [str(b) for b in buckets])
        ax.minorticks_off()
        ax.set_xlabel("prompt tokens (bucket, nearest power of two)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return [_plot("plot-context", "Context-length sweep (needle in a haystack)",
                  "needle* rows bucketed by prompt length. Time in batch: arrival -> last token inside the run's "
                  "batched engine call (queueing included; docs/measures.md).", fig)]


PROBE_HOW = ("Single-request latency, measured by the latency probe: the first items of each strategy sent "
             "{conc} to the same engine after the batch, prefix cache emptied before each (docs/measures.md).")
THROUGHPUT_HOW = ("Throughput cost, measured: the wall time of the strategy's own batched engine calls divided by its "
                  "examples (cached rows left out).")
BATCH_HOW = ("Request time in this batch: arrival -> last token inside the run's batched engine call, so it "
             "includes queueing behind the batch mates; it is not single-request latency (no probe in this run).")
EST_HOW = ("Single-request latency, ESTIMATED by the calibrated latency model (a + b x prompt tokens + c x output "
           "tokens, fitted on a few requests sent one at a time after the batch; leave-one-out error in the summary's "
           "est. fit error; docs/measures.md).")


def _probe_how(probes: pd.DataFrame | None) -> str:
    conc = int(_num(probes, "probe_concurrency").max()) if probes is not None and len(probes) else 1
    return PROBE_HOW.format(conc="one at a time" if conc <= 1 else f"{conc} at a time")


def all_plots(summary: pd.DataFrame, preds: pd.DataFrame, majk: pd.DataFrame | None,
              probes: pd.DataFrame | None = None) -> list[Plot]:
    s = summary.copy()
    s["mean_total_tokens"] = _num(s, "mean_prompt_tokens").fillna(0) + _num(s, "mean_completion_tokens").fillna(0)
    s.loc[_num(s, "mean_prompt_tokens").isna() & _num(s, "mean_completion_tokens").isna(), "mean_total_tokens"] = np.nan
    has_probe = probes is not None and not probes.empty and _num(probes, "latency_s").notna().any()
    fresh = preds[~preds["cached"].fillna(False).astype(bool)] if "cached" in preds else preds
    if has_probe:  # measured > estimated > time in batch (named as such)
        dist = latency_plot(probes, "latency_s", caption=_probe_how(probes))
        front = ("probe_latency_p50_s", "single-request latency p50 (s), latency probe", "probe p50", _probe_how(probes))
    elif _num(fresh, "est_latency_s").notna().any():
        dist = latency_plot(fresh, "est_latency_s", xlabel="estimated single-request latency (s), latency model",
                            title="Single-request latency (estimated by the latency model)", caption=EST_HOW)
        front = ("est_latency_p50_s", "estimated single-request latency p50 (s), latency model", "estimate p50",
                 EST_HOW)
    else:
        dist = latency_plot(fresh, "batch_latency_s", xlabel="request time in this batch (s)",
                            title="Request time in this batch (not single-request latency)", caption=BATCH_HOW)
        front = ("probe_latency_p50_s", "", "", "")
    return [
        *accuracy_plot(s),
        *tradeoff_plot(s, "mean_total_tokens", "mean prompt + completion tokens per example", pid="plot-tokens",
                       title="Accuracy vs tokens", how="Tokens: mean prompt + completion tokens per example."),
        *tradeoff_plot(s, front[0], front[1], pid="plot-latency-front",
                       title=f"Accuracy vs single-request latency ({front[2]})", how=front[3]),
        *tradeoff_plot(s, "engine_s_per_example", "engine seconds per example at full batch (measured)",
                       pid="plot-throughput", title="Accuracy vs throughput cost (engine s per example)",
                       how=THROUGHPUT_HOW),
        *tradeoff_plot(s, "cost_per_example_usd", "cost per example ($)", pid="plot-cost", title="Accuracy vs cost ($)",
                       how="$ per example: throughput cost x the hourly price for a self-hosted model with "
                           "hourly_usd, else token counts x the token prices."),
        *dist, *majk_plot(majk), *guided_plot(preds), *context_plot(preds),
    ]
