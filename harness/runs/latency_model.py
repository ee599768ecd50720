"""The calibrated latency model: single-request latency for every row, estimated (docs/measures.md).

After the batch, a handful of the run's own requests per model are sent one at a time (the latency
probe's machinery: same engine, prefix cache emptied, never through the request cache), chosen to span
the run's prompt lengths. Their outputs are capped so the calibration stays cheap: the one with the
longest context at OUTPUT_CAP tokens (it sets the calibrated context range), the others at SHORT_CAP
(enough for the time per output token, which a single request decodes at a nearly flat rate). On them:

    TTFT               ≈ a' + b'·prompt_tokens                  (least squares)
    end-to-end latency ≈ TTFT + TPOT·(output_tokens - 1)        (TPOT: the median time per output token)
                       = a + b·prompt_tokens + c·output_tokens  (a = a' - TPOT, b = b', c = TPOT)

and applied to every row's token counts: `est_latency_s`, `est_ttft_s` (predictions), `est_latency_p50_s`,
`est_latency_p95_s`, `est_ttft_p50_s`, `est_ttft_p95_s` (summary). Estimates are labelled `est_` everywhere;
`probe_*` stays what a direct probe (`--latency-probe N`) measured. The fit error is the leave-one-out
error on the calibration requests (each predicted by the fit on the others): `loo_mape` in run.json's
`latency_model`, `est_fit_mape` in the summary. Where it does not hold, the row says so in `est_note`:
  - "extrapolated": prompt tokens outside the calibrated prompt range, or prompt + output tokens beyond the
    longest context the calibration decoded at (beyond EDGE slack);
  - "not estimated": rows with several samples (n > 1) or log-likelihood scoring (several requests per
    row, not calibrated);
and always: the model is single-request latency at concurrency 1 from a cold prefix cache, on this
machine at this time; it says nothing about latency under load, and cached rows are left out of the
summary like every other time figure.
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
MIN_UNITS = 100  # the default calibrates a model only when the run has this many of its units (cost)
OUTPUT_CAP = 64  # the longest calibration request generates at most this many tokens
SHORT_CAP = 16  # the others at most this many
EDGE = 0.1  # a row up to 10 % beyond the calibrated token range still counts as inside it
EST_COLUMNS = ["est_latency_s", "est_ttft_s", "est_note", "est_fit_mape"]


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


def choose(rows: Sequence[dict], k: int) -> list[dict]:
    """k rows for the calibration: the row with the longest context (prompt + output up to OUTPUT_CAP)
    first (it gets OUTPUT_CAP tokens and sets the calibrated context range), then rows at evenly spaced
    ranks of prompt length (shortest and longest included), so the prompt-length fit sees the run's
    strategies in proportion. Deterministic."""
    cand = sorted((r for r in rows if _calibratable(r)), key=lambda r: (r["prompt_tokens"], r["completion_tokens"]))
    if not cand or k < 1:
        return []
    longest = max(range(len(cand)), key=lambda i: (cand[i]["prompt_tokens"] + min(cand[i]["completion_tokens"],
                                                                                     OUTPUT_CAP), -i))
    picked = [longest]
    for i in np.linspace(0, len(cand) - 1, max(k - 1, 1)).round().astype(int):
        if int(i) not in picked:
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
              run_id: str, model: str) -> dict:
    """Send the calibration requests (capped at SHORT_CAP / OUTPUT_CAP tokens), journal them and return what run.json
    records. `rows`: the run's prediction rows (their token counts choose the requests)."""
    n_units = len(rows)
    size = DEFAULT_CALIBRATION if k is None else k
    info: dict[str, Any] = {"requests_per_model": size, "output_caps": [SHORT_CAP, OUTPUT_CAP], "requests": 0,
                            "wall_s": 0.0}
    if k is None and n_units < MIN_UNITS:
        info.update(requests_per_model=0, skipped=f"run too small for the default calibration ({n_units} units < "
                    f"{MIN_UNITS}); give --latency-calibration K or --latency-probe N")
        return info
    picked = choose(rows, size)
    want = {(r["task"], r["strategy"], r["example_id"]) for r in picked}
    by_key = {key: u for u in units if (key := (u.task.name, u.strategy.spec, u.example.id)) in want}
    # a relabelled (--force) row has no unit under its label; a unit of several requests is not calibrated
    picked = [r for r in picked
              if (u := by_key.get((r["task"], r["strategy"], r["example_id"]))) and len(u.requests) == 1]
    if not picked:
        return info
    from . import probe

    longest = 0  # choose() puts the row with the longest context first

    def capped(i: int, r: dict):
        u = by_key[(r["task"], r["strategy"], r["example_id"])]
        cap = OUTPUT_CAP if i == longest else SHORT_CAP
        return dataclasses.replace(u, requests=tuple(
            dataclasses.replace(q, sampling=dataclasses.replace(q.sampling, max_tokens=min(q.sampling.max_tokens, cap)))
            for q in u.requests))

    t0 = time.perf_counter()
    probe.send_requests(engine, [capped(i, r) for i, r in enumerate(picked)], 1, journal, info, run_id=run_id,
                        model=model)
    info["wall_s"] = round(time.perf_counter() - t0, 3)
    return info


# -- the fit -----------------------------------------------------------------------------------
def _lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(x, y, rcond=None)[0]


def _parts(p: np.ndarray, o: np.ndarray, y: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """(a', b', TPOT): TTFT ≈ a' + b'·p by least squares; the time per output token after the first is the
    median over the requests of (latency - TTFT) / (output - 1): one slow request on a shared machine
    moves a median little, where it would tilt a three-parameter least squares on six points."""
    ct = _lstsq(np.column_stack([np.ones(len(p)), p]), t)
    return float(ct[0]), float(ct[1]), float(np.median((y - t) / (o - 1)))


def _predict(parts: tuple[float, float, float], p, o):
    a_t, b_t, tpot = parts
    return a_t + b_t * p + tpot * (o - 1), a_t + b_t * p


def fit(points: pd.DataFrame) -> dict | None:
    """latency ≈ a + b·prompt_tokens + c·output_tokens built as TTFT + TPOT·(output - 1): TTFT ≈ a' + b'·prompt
    (least squares), c = TPOT (median), a = a' - c, b = b'. Leave-one-out errors: each request predicted by
    the fit on the others. None with fewer than 4 usable requests (TTFT known, at least 2 output tokens)."""
    ok = points.copy()
    for c in ("prompt_tokens", "completion_tokens", "latency_s", "ttft_s"):
        ok[c] = pd.to_numeric(ok[c], errors="coerce")
    good = ok[["prompt_tokens", "completion_tokens", "latency_s", "ttft_s"]].notna().all(axis=1) \
        & (ok["latency_s"] > 0) & (ok["ttft_s"] > 0) & (ok["completion_tokens"] >= 2)
    if "error" in ok:
        good &= ok["error"].isna() | (ok["error"].astype(str) == "")
    ok = ok[good]
    if len(ok) < 4:
        return None
    p, o = ok["prompt_tokens"].to_numpy(float), ok["completion_tokens"].to_numpy(float)
    y, t = ok["latency_s"].to_numpy(float), ok["ttft_s"].to_numpy(float)
    parts = _parts(p, o, y, t)
    loo = np.array([_predict(_parts(*(np.delete(v, i) for v in (p, o, y, t))), p[i], o[i]) for i in range(len(y))])
    ape, ape_t = np.abs(loo[:, 0] - y) / y, np.abs(loo[:, 1] - t) / t
    a_t, b_t, tpot = parts
    return {"n": int(len(y)), "latency": {"a": a_t - tpot, "b_per_prompt_token": b_t, "c_per_output_token": tpot},
            "ttft": {"a": a_t, "b_per_prompt_token": b_t}, "tpot_s": tpot,
            "prompt_range": [int(p.min()), int(p.max())], "output_range": [int(o.min()), int(o.max())],
            "context_range": [int((p + o).min()), int((p + o).max())],
            "loo_mape": float(ape.mean()), "loo_max_ape": float(ape.max()), "ttft_loo_mape": float(ape_t.mean()),
            "train_mape": float(np.mean(np.abs(_predict(parts, p, o)[0] - y) / y))}


def fit_runs(calibration: pd.DataFrame, probes: pd.DataFrame) -> dict[str, dict]:
    """Per model: the fit on its calibration requests, else on its direct probe requests at concurrency 1."""
    out = {}
    models = set(calibration["model"].dropna()) | set(probes["model"].dropna()) if len(probes) else \
        set(calibration["model"].dropna())
    for m in sorted(models):
        pts, source = calibration[calibration["model"] == m], "calibration"
        if pts.empty:
            pts = probes[(probes["model"] == m) & (pd.to_numeric(probes["probe_concurrency"]) == 1)]
            source = "latency probe"
        f = fit(pts)
        if f:
            out[m] = {**f, "source": source}
    return out


def apply(preds: pd.DataFrame, fits: dict[str, dict]) -> pd.DataFrame:
    """The rows with est_latency_s, est_ttft_s, est_note and est_fit_mape (None where not estimated)."""
    preds = preds.copy()
    for c in EST_COLUMNS:
        preds[c] = None
    for m, f in fits.items():
        sel = (preds["model"] == m).to_numpy()
        g = preds[sel]
        p = pd.to_numeric(g["prompt_tokens"], errors="coerce").to_numpy(float)
        o = pd.to_numeric(g["completion_tokens"], errors="coerce").to_numpy(float)
        lat, tt = f["latency"], f.get("ttft")
        est = np.maximum(lat["a"] + lat["b_per_prompt_token"] * p + lat["c_per_output_token"] * o, 0.0)
        ttft = np.maximum(tt["a"] + tt["b_per_prompt_token"] * p, 0.0) if tt else np.full(len(g), np.nan)
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
    for c in ("est_latency_s", "est_ttft_s", "est_fit_mape"):
        preds[c] = pd.to_numeric(preds[c], errors="coerce")
    return preds


def add_estimates(run_dir: Path, meta: dict, preds: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """At finalize: calibration.jsonl -> calibration.parquet, the fits -> run.json's latency_model, and the
    estimate columns on the prediction rows (idempotent; a resumed run refits on all its requests)."""
    from .results import probes_from_journal, write_frame_atomic

    calib = probes_from_journal(run_dir / "calibration.jsonl")
    if len(calib):
        write_frame_atomic(calib, run_dir / "calibration.parquet")
    if preds.empty or (calib.empty and (probes is None or probes.empty)):
        return preds
    # only requests like the rows the model is applied to: one request, one sample, generated tokens
    key = ["task", "strategy", "model", "example_id"]
    asked = set(zip(*(calib[k] for k in key))) | (set(zip(*(probes[k] for k in key))) if probes is not None else set())
    sub = preds[pd.MultiIndex.from_frame(preds[key]).isin(list(asked))]
    sub = sub[_covered(sub) & (pd.to_numeric(sub["completion_tokens"], errors="coerce") >= 2).to_numpy()]
    usable = set(zip(*(sub[k] for k in key)))
    keep = (lambda f: f[np.array([k in usable for k in zip(*(f[c] for c in key))], dtype=bool)])
    fits = fit_runs(keep(calib), keep(probes) if probes is not None and len(probes) else calib.iloc[0:0])
    if not fits:
        return preds
    meta["latency_model"] = {"form": "TTFT ≈ a' + b'·prompt_tokens (least squares); latency ≈ TTFT + "
                                     "TPOT·(output - 1) (TPOT: median) = a + b·prompt_tokens + c·output_tokens",
                             "edge_slack": EDGE, "models": fits}
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
    return {"est_n": int(len(lat)), "est_latency_p50_s": q(lat, 0.5), "est_latency_p95_s": q(lat, 0.95),
            "est_ttft_p50_s": q(ttft, 0.5), "est_ttft_p95_s": q(ttft, 0.95),
            "est_extrapolated_share": float(notes.str.startswith("extrapolated").sum() / len(lat)),
            "est_fit_mape": float(pd.to_numeric(fresh["est_fit_mape"], errors="coerce").dropna().iloc[0])}
