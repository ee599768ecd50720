"""The calibrated latency model (harness/runs/latency_model.py, docs/measures.md): the fit checked against an
independent least-squares / leave-one-out implementation (scipy, and the hat-matrix identity), the choice
of calibration requests, and the pipeline with a scripted backend whose latency is a known linear function
of the token counts. The fit on the real engine, against a direct probe, is in tests/test_measures.py."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import scipy.optimize

import harness
from harness.runs import latency_model as lm
from harness.backends.scripted import ScriptedBackend
from harness.errors import ConfigError
from harness.records import Completion

A_T, B_T, C = 0.02, 0.0015, 0.03  # TTFT = A_T + B_T·prompt; C s per output token after the first


def _truth(p, o):
    return A_T + B_T * p + C * (o - 1)


def _points(n=12, seed=0, noise=0.02):
    rng = np.random.default_rng(seed)
    p = rng.integers(40, 400, n).astype(float)
    o = rng.integers(2, 200, n).astype(float)
    ttft = (A_T + B_T * p) * (1 + noise * rng.standard_normal(n))
    lat = ttft + C * (o - 1) * (1 + noise * rng.standard_normal(n))
    return pd.DataFrame({"prompt_tokens": p, "completion_tokens": o, "latency_s": lat, "ttft_s": ttft, "error": None})


def _reference(p, o, y, t):
    """Written apart from the harness: scipy least squares for TTFT, numpy median for the per-token time."""
    (a_t, b_t), *_ = scipy.linalg.lstsq(np.column_stack([np.ones(len(p)), p]), t)
    tpot = np.median((y - t) / (o - 1))
    return a_t, b_t, tpot


def test_fit_matches_an_independent_least_squares_and_leave_one_out():
    pts = _points()
    f = lm.fit(pts)
    p, o, y, t = (pts[c].to_numpy(float) for c in ("prompt_tokens", "completion_tokens", "latency_s", "ttft_s"))
    a_t, b_t, tpot = _reference(p, o, y, t)
    ls = scipy.optimize.least_squares(lambda c: c[0] + c[1] * p - t, x0=np.zeros(2)).x  # a second reference
    assert (f["ttft"]["a"], f["ttft"]["b_per_prompt_token"]) == pytest.approx((a_t, b_t), rel=1e-6)
    assert (a_t, b_t) == pytest.approx(tuple(ls), rel=1e-6)
    assert f["latency"] == pytest.approx({"a": a_t - tpot, "b_per_prompt_token": b_t, "c_per_output_token": tpot})
    apes = []
    for i in range(len(p)):
        keep = np.arange(len(p)) != i
        ai, bi, ci = _reference(p[keep], o[keep], y[keep], t[keep])
        apes.append(abs(ai + bi * p[i] + ci * (o[i] - 1) - y[i]) / y[i])
    assert f["loo_mape"] == pytest.approx(np.mean(apes), rel=1e-9)
    assert f["loo_max_ape"] == pytest.approx(np.max(apes), rel=1e-9)
    assert f["prompt_range"] == [pts["prompt_tokens"].min(), pts["prompt_tokens"].max()]
    assert f["loo_mape"] < 0.05  # 2 % noise on an exactly linear truth
    # the fitted form: a + b·prompt + c·output equals TTFT + TPOT·(output - 1)
    lat = f["latency"]
    assert lat["a"] + lat["b_per_prompt_token"] * 100 + lat["c_per_output_token"] * 50 == \
        pytest.approx(a_t + b_t * 100 + tpot * 49)


def test_one_slow_request_moves_the_fit_little():
    pts = _points(6, noise=0.0)
    pts.loc[2, "latency_s"] *= 2.5  # a request that shared the machine with something else
    f = lm.fit(pts)
    assert f["tpot_s"] == pytest.approx(C, rel=0.01)
    assert f["loo_max_ape"] > 0.5  # and the leave-one-out error shows that request


def test_fit_needs_four_points_and_drops_errors():
    pts = _points(5)
    assert lm.fit(pts.iloc[:3]) is None
    bad = pts.copy()
    bad.loc[0, "error"] = "boom"
    assert lm.fit(bad)["n"] == 4


def _rows(spec):
    return [{"task": "t", "strategy": s, "example_id": str(i), "prompt_tokens": p, "completion_tokens": o,
             "error": None, "n_samples": n, "answer_mode": mode} for i, (s, p, o, n, mode) in enumerate(spec)]


def test_choose_spans_the_extremes_and_skips_rows_it_cannot_model():
    rows = _rows([("z", 60, 5, 1, "generate"), ("f", 260, 6, 1, "generate"), ("c", 80, 250, 1, "generate"),
                  ("z", 62, 7, 1, "generate"), ("c", 90, 120, 1, "generate"), ("f", 255, 9, 1, "generate"),
                  ("sc", 70, 300, 5, "generate"), ("ll", 500, 0, None, "loglikelihood"), ("z", 61, 1, 1, "generate")])
    got = lm.choose(rows, 4)
    ids = [r["example_id"] for r in got]
    assert ids[0] == "1"  # the longest context (prompt + output up to the cap) first: it gets the long cap
    assert {"0", "1", "2"} <= set(ids)  # the shortest and the longest prompt, the longest output
    assert not {"6", "7", "8"} & set(ids)  # n > 1, log-likelihood, under 2 output tokens
    assert [r["example_id"] for r in lm.choose(rows, 4)] == ids  # deterministic
    # a run of two prompt-length clusters (zero-shot ~90 tokens, few-shot ~270): both are calibrated
    two = _rows([("z", 90 + i % 5, 40 + i, 1, "generate") for i in range(50)]
                + [("f", 265 + i % 8, 64, 1, "generate") for i in range(50)])
    picks = lm.choose(two, 6)
    assert sum(r["strategy"] == "f" for r in picks) >= 2 and sum(r["strategy"] == "z" for r in picks) >= 2
    assert len(lm.choose(rows, 6)) == 6


def test_plan_of_the_flags():
    assert lm.latency_plan(None, None) == (0, None)  # default: the calibrated estimate, no direct probe
    assert lm.latency_plan(0, None) == (0, 0)  # 0 turns everything off
    assert lm.latency_plan(3, None) == (3, 0)  # a direct probe: the estimate is fitted on its requests
    assert lm.latency_plan(0, 6) == (0, 6)
    for bad in (-1, 2, 3):
        with pytest.raises(ConfigError, match="calibration size") as e:
            lm.latency_plan(None, bad)
        assert e.value.field == "--latency-calibration"


def _linear(req):
    """A backend whose latency is exactly TTFT + C·(output - 1), TTFT = A_T + B_T·prompt; outputs of varied length."""
    p = sum(len(m.content.split()) for m in req.messages)
    o = min(2 + (p * 7) % 60, req.sampling.max_tokens)
    return Completion(texts=(" ".join(["yes"] * o),), prompt_tokens=p, completion_tokens=(o,), finish_reasons=("stop",),
                      latency_s=_truth(p, o), ttft_s=A_T + B_T * p)


def test_calibration_on_a_linear_backend_recovers_it_and_labels_every_row(tmp_path):
    backend = ScriptedBackend(_linear)
    out = tmp_path / "r"
    df = harness.run(["coin_flip"], ["zero_shot", "few_shot:k=2"], backend=backend, limit=8, out=out, progress=False,
                     write_report=False, cache=False, latency_calibration=5)
    assert backend.calls == [8, 8, 1, 1, 1, 1, 1, 1]  # two groups, a warm-up, 5 single calibration requests
    meta = json.loads((out / "run.json").read_text())
    fit = meta["latency_model"]["models"]["scripted"]
    assert fit["source"] == "calibration" and fit["n"] == 5 and fit["loo_mape"] < 1e-6
    assert fit["latency"]["c_per_output_token"] == pytest.approx(C)
    assert meta["calibration"]["requests"] == 5 and "probe" not in meta
    assert pd.read_parquet(out / "calibration.parquet")["probe"].all()
    assert not (out / "probes.parquet").exists() or pd.read_parquet(out / "probes.parquet").empty
    assert len(df) == 16  # calibration requests are no rows
    truth = _truth(df["prompt_tokens"], df["completion_tokens"])
    assert df["est_latency_s"].to_numpy() == pytest.approx(truth.to_numpy(), rel=1e-6)
    inside = df["est_note"].isna()
    assert inside.any()
    assert (df.loc[~inside, "est_note"].str.startswith("extrapolated")).all()
    s = pd.read_csv(out / "summary.csv").set_index("strategy")
    assert set(s["latency_source"]) == {"estimate"} and s["probe_latency_p50_s"].isna().all() \
        if "probe_latency_p50_s" in s else set(s["latency_source"]) == {"estimate"}
    for strat, g in df.groupby("strategy"):
        assert s.loc[strat, "est_latency_p50_s"] == pytest.approx(truth[g.index].median())
        assert s.loc[strat, "est_ttft_p50_s"] == pytest.approx((A_T + B_T * g["prompt_tokens"]).median())


def test_calibration_requests_are_capped_and_the_default_skips_small_runs(tmp_path):
    seen = []

    def fn(req):
        seen.append(req.sampling.max_tokens)
        return _linear(req)

    harness.run(["coin_flip"], ["cot"], backend=ScriptedBackend(fn), limit=6, out=tmp_path / "a", progress=False,
                write_report=False, cache=False, latency_calibration=4)
    assert max(seen[6:]) <= lm.OUTPUT_CAP < max(seen[:6])  # cot asks for more than the cap in the batch
    calib = sorted(seen[7:])  # after the warm-up: one request capped at OUTPUT_CAP, the others at SHORT_CAP
    assert len(calib) >= 2 and calib[-1] == lm.OUTPUT_CAP and set(calib[:-1]) == {lm.SHORT_CAP}
    small = ScriptedBackend(_linear)
    harness.run(["coin_flip"], ["zero_shot"], backend=small, limit=6, out=tmp_path / "b", progress=False,
                write_report=False, cache=False)  # the default: under MIN_UNITS units, no calibration
    meta = json.loads((tmp_path / "b" / "run.json").read_text())
    assert small.calls == [6] and "too small" in meta["calibration"]["skipped"] and "latency_model" not in meta
    off = ScriptedBackend(_linear)
    harness.run(["coin_flip"], ["zero_shot"], backend=off, limit=6, out=tmp_path / "c", progress=False,
                write_report=False, cache=False, latency_probe=0)
    assert off.calls == [6] and "calibration" not in json.loads((tmp_path / "c" / "run.json").read_text())


def test_a_direct_probe_calibrates_the_model_when_no_calibration_runs(tmp_path):
    out = tmp_path / "r"
    df = harness.run(["coin_flip"], ["zero_shot", "few_shot:k=2"], backend=ScriptedBackend(_linear), limit=5,
                     out=out, progress=False, write_report=False, cache=False, latency_probe=2)
    fit = json.loads((out / "run.json").read_text())["latency_model"]["models"]["scripted"]
    assert fit["source"] == "latency probe" and fit["n"] == 4
    s = pd.read_csv(out / "summary.csv")
    assert set(s["latency_source"]) == {"probe"}
    assert s["probe_latency_p50_s"].notna().all() and s["est_latency_p50_s"].notna().all()
    assert df["est_latency_s"].notna().all()


def test_rows_the_model_does_not_cover_get_no_estimate():
    preds = pd.DataFrame({"model": "m", "prompt_tokens": [50, 60, 70, 900], "completion_tokens": [5, 10, 40, 10],
                          "answer_mode": ["generate", "loglikelihood", "generate", "generate"],
                          "n_samples": [1, None, 5, 1], "error": None})
    fits = {"m": {"latency": {"a": 0.1, "b_per_prompt_token": 0.001, "c_per_output_token": 0.02},
                  "ttft": {"a": 0.05, "b_per_prompt_token": 0.001}, "prompt_range": [40, 300],
                  "output_range": [2, 60], "context_range": [50, 320], "loo_mape": 0.07}}
    out = lm.apply(preds, fits)
    assert out["est_latency_s"][0] == pytest.approx(0.1 + 0.001 * 50 + 0.02 * 5) and out["est_note"][0] is None
    assert out["est_latency_s"][1:3].isna().all() and out["est_note"][1].startswith("not estimated")
    assert out["est_note"][3].startswith("extrapolated") and out["est_latency_s"][3] > 0  # prompt beyond 300
    ctx = lm.apply(pd.DataFrame({"model": "m", "prompt_tokens": [250, 250], "completion_tokens": [120, 40],
                                 "answer_mode": "generate", "n_samples": 1, "error": None}), fits)
    assert ctx["est_note"][0].startswith("extrapolated") and ctx["est_note"][1] is None  # 370 > 320 x 1.1; 290
    assert (out["est_fit_mape"] == 0.07).all()


def test_the_report_names_the_estimate_and_prefers_a_direct_probe(tmp_path):
    """The latency plots say which measure they show: the estimate when only the model ran, the probe when
    a direct probe ran (never the time in batch under a latency name)."""
    from harness.reports.plots import all_plots
    from harness.runs.results import load_run

    kw = dict(backend=ScriptedBackend(_linear), limit=8, progress=False, write_report=False, cache=False)
    harness.run(["coin_flip"], ["zero_shot", "few_shot:k=2"], out=tmp_path / "est", latency_calibration=5, **kw)
    harness.run(["coin_flip"], ["zero_shot", "few_shot:k=2"], out=tmp_path / "probe", latency_probe=2, **kw)
    for name, word in (("est", "estimate"), ("probe", "probe")):
        d = load_run(tmp_path / name)
        plots = {p.id: p for p in all_plots(d["summary"], d["predictions"], None, d["probes"])}
        front, dist = plots["plot-latency-front"], plots["plot-latency"]
        assert word in front.title and word in dist.title, (name, front.title, dist.title)
        assert ("ESTIMATED" in front.caption) == (name == "est")
        assert "in this batch" not in dist.title
