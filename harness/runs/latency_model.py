"""The calibrated latency model: single-request latency for every row, estimated (docs/measures.md).

After the batch, a handful of the run's own requests per model are sent one at a time (the latency
probe's machinery: same engine, prefix cache emptied, never through the request cache), chosen to span
the run's prompt lengths. Their outputs are capped so the calibration stays cheap: one request decodes
up to the long cap (the 90th percentile of the run's output lengths, per group, between OUTPUT_CAP and
LONG_CAP_MAX tokens: the calibration covers the run's long chain-of-thought outputs), the others up to
SHORT_CAP (enough for the time per output token). On them:

    TTFT               ≈ a + b·prompt_tokens                    (bounded least squares: a, b ≥ 0)
    end-to-end latency ≈ TTFT + c·(output_tokens - 1)           (c = TPOT: the median time per output
                       = a + b·prompt_tokens + c·(output_tokens - 1)    token after the first, ≥ 0)

and applied to every row's token counts: `est_latency_s`, `est_ttft_s` (predictions), `est_latency_p50_s`,
`est_latency_p95_s`, `est_ttft_p50_s`, `est_ttft_p95_s` (summary). Every coefficient is non-negative (a
longer prompt or output is never predicted faster). Estimates are labelled `est_` everywhere; `probe_*`
stays what a direct probe (`--latency-probe N`) measured. The fit error is the leave-one-out error on the
calibration requests (each predicted by the fit on the others): `loo_mape` in run.json's `latency_model`,
`est_fit_mape` in the summary; above LOO_FLAG it is flagged (`est_fit_flag`). Where the model does not
hold, the row says so in `est_note`:
  - "extrapolated": prompt tokens outside the calibrated prompt range, or prompt + output tokens beyond the
    longest context the calibration decoded at (beyond EDGE slack);
  - "not estimated": rows with several samples (n > 1) or log-likelihood scoring (several requests per
    row, not calibrated);
and always: the model is single-request latency at concurrency 1 from a cold prefix cache, on this
machine at the time of its calibration; it says nothing about latency under load, and cached rows are
left out of the summary like every other time figure.

One rule per run, for every model of it: a run of at least MIN_UNITS units per model calibrates each
model with DEFAULT_CALIBRATION requests; a smaller run reuses the calibration cached for the same model,
engine settings and machine (harness/runs/calibration_cache.py; labelled with its date), else does a
reduced one of REDUCED_CALIBRATION requests (labelled too).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError

DEFAULT_CALIBRATION = 6  # requests per model
REDUCED_CALIBRATION = 3  # a run too small for the default, with no cached calibration to reuse
MIN_UNITS = 100  # the default calibrates a model in full only when the run has this many of its units (cost)
MIN_POINTS = 3  # a fit needs this many usable requests (two parameters for TTFT, one median)
OUTPUT_CAP = 64  # the long calibration request generates at least this many tokens (when its row does) ...
LONG_CAP_MAX = 256  # ... and at most this many: the time budget (docs/measures.md)
COVER_QUANTILE = 0.9  # the long request decodes this quantile of every group's output lengths (within the caps)
SHORT_CAP = 16  # the other requests at most this many
EDGE = 0.1  # a row up to 10 % beyond the calibrated token range still counts as inside it
LOO_FLAG = 0.20  # a fit whose leave-one-out error (mean APE) exceeds this is flagged (est_fit_flag)
EST_COLUMNS = ["est_latency_s", "est_ttft_s", "est_note", "est_fit_mape", "est_calibration"]
FORM = ("TTFT ≈ a + b·prompt_tokens (non-negative least squares: a, b ≥ 0); "
        "latency ≈ TTFT + c·(output_tokens - 1) "
        "(c: the median time per output token after the first, ≥ 0)")


def latency_plan(latency_probe: int | None, latency_calibration: int | None) -> tuple[int, int | None]:
    """(direct probe items per group, calibration requests per model: None = the default's rule).
    No flag: no direct probe, the default calibration. `--latency-probe 0`: everything off unless a
    calibration size is given. `--latency-probe N`: the estimate is fitted on the probe's own requests."""
    from .probe import DEFAULT_PROBE

    if latency_calibration is not None and (not isinstance(latency_calibration, int) or latency_calibration < 0
                                            or 0 < latency_calibration < 4):
        raise ConfigError(f"bad calibration size {latency_calibration!r}", where="command line",
                          field="--latency-calibration", fix="give 0 (off) or at least 4 requests per model")
    if latency_probe is None:
        return DEFAULT_PROBE, latency_calibration
    return latency_probe, 0 if latency_calibration is None else latency_calibration


def long_cap(rows: Sequence[dict]) -> int:
    """Output tokens for the long calibration request: the largest per-(task, strategy) COVER_QUANTILE of
    the output lengths of the rows the model covers (so every group's 90th percentile is decoded, the run's
    too), at least OUTPUT_CAP and at most LONG_CAP_MAX (the budget)."""
    groups: dict[tuple, list[int]] = {}
    for r in rows:
        if _calibratable(r):
            groups.setdefault((r.get("task"), r.get("strategy")), []).append(int(r["completion_tokens"]))
    q = max((float(np.quantile(v, COVER_QUANTILE, method="higher")) for v in groups.values()), default=0.0)
    return int(min(LONG_CAP_MAX, max(OUTPUT_CAP, q)))


def choose(rows: Sequence[dict], k: int, cap: int = OUTPUT_CAP) -> list[dict]:
    """k rows for the calibration. First the long request (it gets `cap` output tokens and sets the
    calibrated context range): the longest prompt among the rows whose output reaches `cap`, else the row
    with the longest context (prompt + output up to `cap`). Then rows at evenly spaced ranks of prompt length
    (shortest and longest included), so the prompt-length fit sees the run's strategies in proportion.
    Deterministic."""
    cand = sorted((r for r in rows if _calibratable(r)), key=lambda r: (r["prompt_tokens"], r["completion_tokens"]))
    if not cand or k < 1:
        return []
    full = [i for i, r in enumerate(cand) if r["completion_tokens"] >= cap]
    longest = (max(full, key=lambda i: (cand[i]["prompt_tokens"], cand[i]["completion_tokens"], -i)) if full else
               max(range(len(cand)), key=lambda i: (cand[i]["prompt_tokens"] + min(cand[i]["completion_tokens"], cap),
                                                    -i)))
    picked = [longest]
    for i in np.linspace(0, len(cand) - 1, max(k - 1, 1)).round().astype(int):
        if int(i) not in picked and len(picked) < k:
            picked.append(int(i))
    p = np.array([r["prompt_tokens"] for r in cand], dtype=float)
    while len(picked) < min(k, len(cand)):  # ranks that fell on the same row: the farthest prompt length left
        d = np.min(np.abs(p[:, None] - p[None, picked]), axis=1)
        d[picked] = -1.0
        picked.append(int(np.argmax(d)))
    return [cand[i] for i in picked]


def _calibratable(r: dict) -> bool:
    """A journal row the model covers: no error, one sample (not log-likelihood scoring), 2+ output tokens."""
    n, o = r.get("n_samples"), r.get("completion_tokens")
    return (not r.get("error") and r.get("answer_mode") != "loglikelihood" and n in (None, 1)
            and r.get("prompt_tokens") is not None and o is not None and o >= 2)


def _covered(g: pd.DataFrame) -> np.ndarray:
    """_calibratable, vectorised over a frame (output length aside)."""
    err = g["error"].notna() & (g["error"].astype(str) != "") if "error" in g else pd.Series(False, index=g.index)
    return ((g["answer_mode"] != "loglikelihood") & (pd.to_numeric(g["n_samples"]).fillna(1) <= 1) & ~err
            & pd.to_numeric(g["prompt_tokens"], errors="coerce").notna()
            & pd.to_numeric(g["completion_tokens"], errors="coerce").notna()).to_numpy()


def calibrate(engine: Any, units: Sequence[Any], rows: Sequence[dict], k: int | None, *, journal: Any,
              run_id: str, model: str, cache_folder: Path | None = None) -> dict:
    """Calibrate `model` by the run's one rule and return what run.json records (docs/measures.md):
    k requests when given; else DEFAULT_CALIBRATION when the run has at least MIN_UNITS units per model, else
    the calibration cached for this model, engine settings and machine (`cache_folder`; None: no cache),
    else a reduced one of REDUCED_CALIBRATION requests. `units`: the run's units of this model; `rows`: the
    run's prediction rows (only this model's are used: their token counts choose the requests)."""
    from . import calibration_cache as cc

    rows = [r for r in rows if r.get("model") in (None, model)]
    n_units = len(units)
    size = DEFAULT_CALIBRATION if k is None else k
    key = cc.key(engine) if cache_folder is not None else None
    info: dict[str, Any] = {"rule": "given" if k is not None else "full", "requests_per_model": size,
                            "output_caps": [SHORT_CAP, long_cap(rows)], "requests": 0, "wall_s": 0.0}
    if k is None and n_units < MIN_UNITS:
        entry = cc.load(cache_folder, key) if key else None
        if entry:
            cc.record_reuse(journal.path.parent, model, entry)
            info.update(rule="reused", requests_per_model=0, reused={k_: entry[k_] for k_ in cc.SUMMARY_KEYS})
            return info
        size = REDUCED_CALIBRATION
        info.update(rule="reduced", requests_per_model=size, reason=f"run too small for the full calibration "
                    f"({n_units} units < {MIN_UNITS}) and no cached calibration for this model and machine")
    cap = info["output_caps"][1]
    picked = choose(rows, size, cap)
    want = {(r["task"], r["strategy"], r["example_id"]) for r in picked}
    by_key = {key_: u for u in units if (key_ := (u.task.name, u.strategy.spec, u.example.id)) in want}
    # a relabelled (--force) row has no unit under its label; a unit of several requests is not calibrated
    picked = [r for r in picked
              if (u := by_key.get((r["task"], r["strategy"], r["example_id"]))) and len(u.requests) == 1]
    if not picked:
        return info
    from . import probe

    def capped(i: int, r: dict):
        u = by_key[(r["task"], r["strategy"], r["example_id"])]
        c = cap if i == 0 else SHORT_CAP  # choose() puts the long request first
        return dataclasses.replace(u, requests=tuple(
            dataclasses.replace(q, sampling=dataclasses.replace(q.sampling, max_tokens=min(q.sampling.max_tokens, c)))
            for q in u.requests))

    t0 = time.perf_counter()
    probe.send_requests(engine, [capped(i, r) for i, r in enumerate(picked)], 1, journal, info, run_id=run_id,
                        model=model)
    info["wall_s"] = round(time.perf_counter() - t0, 3)
    if key:  # this model's calibration on this machine, for later runs too small to calibrate their own
        points = [e["p"] for e in journal.read() if e["p"].get("model") == model]
        cc.store(cache_folder, key, points, kind="reduced" if info["rule"] == "reduced" else "full", model=model)
    return info


# -- the fit -----------------------------------------------------------------------------------
def _nnls(p: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """TTFT ≈ a + b·p by least squares with a, b ≥ 0: bounded least squares with the bounds [0, ∞), which is
    scipy's non-negative least squares (nnls; 10x faster here than lsq_linear with bounds, same solution:
    tests/test_latency_model.py checks one against the other)."""
    from scipy.optimize import nnls

    x, _ = nnls(np.column_stack([np.ones(len(p)), p]), t)
    return float(max(x[0], 0.0)), float(max(x[1], 0.0))


def _parts(p: np.ndarray, o: np.ndarray, y: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """(a, b, c): TTFT ≈ a + b·p (bounded least squares); c, the time per output token after the first, is the
    median over the requests of (latency - TTFT) / (output - 1), at least 0: one slow request on a shared
    machine moves a median little, where it would tilt a three-parameter least squares on six points."""
    a, b = _nnls(p, t)
    return a, b, float(max(np.median((y - t) / (o - 1)), 0.0))


def _predict(parts: tuple[float, float, float], p, o):
    a, b, c = parts
    return a + b * p + c * (o - 1), a + b * p


def fit(points: pd.DataFrame) -> dict | None:
    """latency ≈ a + b·prompt_tokens + c·(output_tokens - 1), built as TTFT ≈ a + b·prompt (bounded least
    squares) plus c = TPOT (median); every coefficient ≥ 0. Leave-one-out errors: each request predicted by
    the fit on the others; `loo_flag` when their mean exceeds LOO_FLAG. None with fewer than MIN_POINTS usable
    requests (TTFT known, at least 2 output tokens)."""
    n = len(points)
    p, o, y, t = (pd.to_numeric(points[c], errors="coerce").to_numpy(float) if c in points else np.full(n, np.nan)
                  for c in ("prompt_tokens", "completion_tokens", "latency_s", "ttft_s"))
    with np.errstate(invalid="ignore"):
        good = ~np.isnan(p + o + y + t) & (y > 0) & (t > 0) & (o >= 2)
    if "error" in points:
        err = points["error"]
        good &= (err.isna() | (err.astype(str) == "")).to_numpy()
    if good.sum() < MIN_POINTS:
        return None
    p, o, y, t = p[good], o[good], y[good], t[good]
    parts = _parts(p, o, y, t)
    loo = np.array([_predict(_parts(*(np.delete(v, i) for v in (p, o, y, t))), p[i], o[i]) for i in range(len(y))])
    ape, ape_t = np.abs(loo[:, 0] - y) / y, np.abs(loo[:, 1] - t) / t
    a, b, c = parts
    return {"n": int(len(y)), "latency": {"a": a, "b_per_prompt_token": b, "c_per_output_token": c},
            "ttft": {"a": a, "b_per_prompt_token": b}, "tpot_s": c,
            "prompt_range": [int(p.min()), int(p.max())], "output_range": [int(o.min()), int(o.max())],
            "context_range": [int((p + o).min()), int((p + o).max())],
            "loo_mape": float(ape.mean()), "loo_max_ape": float(ape.max()), "ttft_loo_mape": float(ape_t.mean()),
            "loo_flag": bool(ape.mean() > LOO_FLAG),
            "train_mape": float(np.mean(np.abs(_predict(parts, p, o)[0] - y) / y))}


def _label(f: dict) -> str:
    """How the estimate was calibrated, in words (the summary's est_calibration, the report's cells)."""
    if f["source"] == "reused calibration":
        return f"estimate, calibrated {f['calibrated_on']} on this machine (reused, {f['n']} requests)"
    if f["source"] == "latency probe":
        return f"estimate, fitted on the latency probe's {f['n']} requests"
    if f["n"] < 4:
        return f"estimate, reduced calibration in this run ({f['n']} requests)"
    return f"estimate, calibrated in this run ({f['n']} requests)"


def fit_runs(calibration: pd.DataFrame, probes: pd.DataFrame, reused: dict[str, dict] | None = None) -> dict[str, dict]:
    """Per model: the fit on its calibration requests, else on its direct probe requests at concurrency 1, else
    on the cached calibration this run reused (`reused`: {model: cache entry})."""
    out = {}
    models = set(calibration["model"].dropna()) | (set(probes["model"].dropna()) if len(probes) else set()) \
        | set(reused or {})
    for m in sorted(models):
        f, source = None, None
        for source, pts in (("calibration", calibration[calibration["model"] == m]),
                            ("latency probe", probes[(probes["model"] == m)
                                                     & (pd.to_numeric(probes["probe_concurrency"]) == 1)]
                             if len(probes) else probes)):
            if len(pts) and (f := fit(pts)):
                break
        if not f and m in (reused or {}):
            f, source = fit(pd.DataFrame(reused[m]["points"])), "reused calibration"
        if f:
            f["source"] = source
            if source == "reused calibration":
                f.update(calibrated_on=reused[m]["date"], calibrated_at=reused[m]["created_at"],
                         calibration_kind=reused[m]["kind"])
            f["label"] = _label(f)
            out[m] = f
    return out


def apply(preds: pd.DataFrame, fits: dict[str, dict]) -> pd.DataFrame:
    """The rows with est_latency_s, est_ttft_s, est_note, est_fit_mape and est_calibration (None where not
    estimated)."""
    preds = preds.copy()
    for c in EST_COLUMNS:
        preds[c] = None
    for m, f in fits.items():
        sel = (preds["model"] == m).to_numpy()
        g = preds[sel]
        p = pd.to_numeric(g["prompt_tokens"], errors="coerce").to_numpy(float)
        o = pd.to_numeric(g["completion_tokens"], errors="coerce").to_numpy(float)
        est, ttft = _predict((f["ttft"]["a"], f["ttft"]["b_per_prompt_token"], f["tpot_s"]), p, np.maximum(o, 1))
        covered = _covered(g)
        # TTFT is calibrated over the prompt lengths, the per-token time over the contexts it decoded at
        (p0, p1), c1 = f["prompt_range"], f["context_range"][1]
        inside = (p >= p0 * (1 - EDGE)) & (p <= p1 * (1 + EDGE)) & (p + o <= c1 * (1 + EDGE))
        note = np.where(~covered, "not estimated: several samples or requests per row",
                        np.where(inside, None, "extrapolated: tokens outside the calibrated range"))
        idx = preds.index[sel]
        preds.loc[idx, "est_latency_s"] = np.where(covered, est, np.nan)
        preds.loc[idx, "est_ttft_s"] = np.where(covered, np.minimum(ttft, est), np.nan)
        preds.loc[idx, "est_note"] = note
        preds.loc[idx, "est_fit_mape"] = f["loo_mape"]
        preds.loc[idx, "est_calibration"] = np.where(covered, f.get("label", "estimate"), None)
    for c in ("est_latency_s", "est_ttft_s", "est_fit_mape"):
        preds[c] = pd.to_numeric(preds[c], errors="coerce")
    return preds


def add_estimates(run_dir: Path, meta: dict, preds: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """At finalize: calibration.jsonl -> calibration.parquet, the fits -> run.json's latency_model, and the
    estimate columns on the prediction rows (idempotent; a resumed run refits on all its requests; a model
    without requests of its own uses the cached calibration the run reused, calibration_reused.json)."""
    from .calibration_cache import read_reuse
    from .results import probes_from_journal, write_frame_atomic

    calib = probes_from_journal(run_dir / "calibration.jsonl")
    if len(calib):
        write_frame_atomic(calib, run_dir / "calibration.parquet")
    reused = read_reuse(run_dir)
    if preds.empty or (calib.empty and (probes is None or probes.empty) and not reused):
        return preds
    # only requests like the rows the model is applied to: one request, one sample, generated tokens
    key = ["task", "strategy", "model", "example_id"]
    asked = set(zip(*(calib[k] for k in key))) | (set(zip(*(probes[k] for k in key))) if probes is not None else set())
    sub = preds[pd.MultiIndex.from_frame(preds[key]).isin(list(asked))]
    sub = sub[_covered(sub) & (pd.to_numeric(sub["completion_tokens"], errors="coerce") >= 2).to_numpy()]
    usable = set(zip(*(sub[k] for k in key)))
    keep = (lambda f: f[np.array([k in usable for k in zip(*(f[c] for c in key))], dtype=bool)])
    fits = fit_runs(keep(calib), keep(probes) if probes is not None and len(probes) else calib.iloc[0:0],
                    {m: e for m, e in reused.items() if m in set(preds["model"])})
    if not fits:
        return preds
    meta["latency_model"] = {"form": FORM, "edge_slack": EDGE, "loo_flag_threshold": LOO_FLAG, "models": fits}
    return apply(preds, fits)


def estimate_summary(fresh: pd.DataFrame) -> dict:
    """Summary columns of a group's estimates (rows not answered from the cache)."""
    if "est_latency_s" not in fresh:
        return {}
    lat = pd.to_numeric(fresh["est_latency_s"], errors="coerce").dropna()
    if lat.empty:
        return {}
    ttft = pd.to_numeric(fresh["est_ttft_s"], errors="coerce").dropna()
    notes = fresh["est_note"].astype(str)
    q = (lambda s, x: float(s.quantile(x)) if len(s) else None)
    mape = float(pd.to_numeric(fresh["est_fit_mape"], errors="coerce").dropna().iloc[0])
    label = fresh["est_calibration"].dropna() if "est_calibration" in fresh else pd.Series(dtype=object)
    return {"est_n": int(len(lat)), "est_latency_p50_s": q(lat, 0.5), "est_latency_p95_s": q(lat, 0.95),
            "est_ttft_p50_s": q(ttft, 0.5), "est_ttft_p95_s": q(ttft, 0.95),
            "est_extrapolated_share": float(notes.str.startswith("extrapolated").sum() / len(lat)),
            "est_fit_mape": mape, "est_fit_flag": bool(mape > LOO_FLAG),
            "est_calibration": str(label.iloc[0]) if len(label) else "estimate"}


def latency_source(est: dict, probed: bool) -> str | None:
    """The summary's latency_source: 'probe', else 'estimate' (calibrated in this run), 'estimate-reduced'
    or 'estimate-reused', else None (then latency_note says why)."""
    if probed:
        return "probe"
    if "est_n" not in est:
        return None
    label = est.get("est_calibration", "")
    return "estimate-reused" if "reused" in label else "estimate-reduced" if "reduced" in label else "estimate"


def no_latency_reason(g: pd.DataFrame, fresh: pd.DataFrame) -> str:
    """Why a group has neither a probe nor an estimate (the summary's latency_note, shown next to '—')."""
    if fresh.empty:
        return "all rows answered from the request cache"
    if "est_note" in fresh and fresh["est_note"].astype(str).str.startswith("not estimated").all():
        return "not estimated: several samples or requests per row (use --latency-probe N)"
    return "no probe, and no usable calibration for this model (--latency-probe 0, or no request timings)"
