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
    assert f["latency"] == pytest.approx({"a": a_t, "b_per_prompt_token": b_t, "c_per_output_token": tpot})
    apes = []
    for i in range(len(p)):
        keep = np.arange(len(p)) != i
        ai, bi, ci = _reference(p[keep], o[keep], y[keep], t[keep])
        apes.append(abs(ai + bi * p[i] + ci * (o[i] - 1) - y[i]) / y[i])
    assert f["loo_mape"] == pytest.approx(np.mean(apes), rel=1e-9)
    assert f["loo_max_ape"] == pytest.approx(np.max(apes), rel=1e-9)
    assert f["prompt_range"] == [pts["prompt_tokens"].min(), pts["prompt_tokens"].max()]
    assert f["loo_mape"] < 0.05  # 2 % noise on an exactly linear truth
    # the fitted form: a + b·prompt + c·(output - 1) is TTFT + TPOT·(output - 1), every coefficient >= 0
    lat = f["latency"]
    assert lat["a"] + lat["b_per_prompt_token"] * 100 + lat["c_per_output_token"] * 49 == \
        pytest.approx(a_t + b_t * 100 + tpot * 49)
    assert min(lat.values()) >= 0 and not f["loo_flag"]


def test_one_slow_request_moves_the_fit_little():
    pts = _points(6, noise=0.0)
    pts.loc[2, "latency_s"] *= 2.5  # a request that shared the machine with something else
    f = lm.fit(pts)
    assert f["tpot_s"] == pytest.approx(C, rel=0.01)
    assert f["loo_max_ape"] > 0.5  # and the leave-one-out error shows that request


def test_fit_needs_three_points_and_drops_errors():
    pts = _points(5)
    assert lm.fit(pts.iloc[:2]) is None and lm.fit(pts.iloc[:3])["n"] == 3  # a reduced calibration: 3 requests
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
    assert ids[0] == "4"  # the longest prompt among the rows whose output reaches the cap first: it gets the cap
    assert {"0", "1", "4"} <= set(ids)  # the shortest and the longest prompt, the long request
    assert lm.choose(rows, 4, cap=300)[0]["example_id"] == "2"  # no output reaches it: the longest context
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
                write_report=False, cache=False)  # the default: under MIN_UNITS units and no cache, a reduced one
    meta = json.loads((tmp_path / "b" / "run.json").read_text())
    assert small.calls == [6, 1] + [1] * lm.REDUCED_CALIBRATION  # the warm-up, then the reduced calibration
    assert meta["calibration"]["rule"] == "reduced" and "too small" in meta["calibration"]["reason"]
    fit = meta["latency_model"]["models"]["scripted"]
    assert fit["n"] == lm.REDUCED_CALIBRATION and "reduced calibration" in fit["label"]
    s = pd.read_csv(tmp_path / "b" / "summary.csv")
    assert list(s["latency_source"]) == ["estimate-reduced"] and "reduced" in s["est_calibration"][0]
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
    fits = {"m": {"latency": {"a": 0.05, "b_per_prompt_token": 0.001, "c_per_output_token": 0.02},
                  "ttft": {"a": 0.05, "b_per_prompt_token": 0.001}, "tpot_s": 0.02, "prompt_range": [40, 300],
                  "output_range": [2, 60], "context_range": [50, 320], "loo_mape": 0.07}}
    out = lm.apply(preds, fits)
    assert out["est_latency_s"][0] == pytest.approx(0.05 + 0.001 * 50 + 0.02 * 4) and out["est_note"][0] is None
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


# -- issue 28: a physical fit, calibration that covers the run, one rule per model, small runs ----------------
def test_no_coefficient_is_ever_negative_on_1000_noisy_calibration_sets():
    """Random truths (zero slopes included), 3-8 requests, noise up to ±60 % and an occasional 3x straggler:
    the bounded fit never predicts a longer prompt or output faster. Its TTFT part (scipy's nnls) is checked
    against scipy's lsq_linear with bounds (bounded-variable least squares, another algorithm for the same
    problem); the unconstrained least squares is negative on many of these sets, so the bound is what holds it."""
    rng = np.random.default_rng(28)
    negative_unbounded = 0
    for _ in range(1000):
        n = int(rng.integers(3, 9))
        a, b, c = rng.uniform(0.001, 0.2), rng.choice([0.0, rng.uniform(0, 0.002)]), rng.uniform(0, 0.05)
        p = rng.integers(20, 600, n).astype(float)
        o = rng.integers(2, 256, n).astype(float)
        noise = lambda: np.exp(rng.normal(0, rng.uniform(0.01, 0.6), n))  # noqa: E731
        t = (a + b * p) * noise()
        y = t + c * (o - 1) * noise() * np.where(rng.random(n) < 0.1, 3.0, 1.0)
        f = lm.fit(pd.DataFrame({"prompt_tokens": p, "completion_tokens": o, "latency_s": y, "ttft_s": t}))
        coefs = [*f["latency"].values(), *f["ttft"].values(), f["tpot_s"]]
        assert min(coefs) >= 0, coefs
        ref = scipy.optimize.lsq_linear(np.column_stack([np.ones(n), p]), t, bounds=(0, np.inf), method="bvls").x
        assert (f["ttft"]["a"], f["ttft"]["b_per_prompt_token"]) == pytest.approx(tuple(ref), rel=1e-5, abs=1e-9)
        negative_unbounded += bool(min(scipy.linalg.lstsq(np.column_stack([np.ones(n), p]), t)[0]) < 0)
    assert negative_unbounded > 50


def test_a_fit_with_a_large_leave_one_out_error_is_flagged_in_the_summary_and_the_report():
    from harness.reports.report import summary_table

    pts = _points(5, noise=0.0)
    assert not lm.fit(pts)["loo_flag"]
    pts.loc[1, "latency_s"] *= 6  # a request that met a busy machine
    pts.loc[3, "ttft_s"] *= 4
    f = lm.fit(pts)
    assert f["loo_mape"] > lm.LOO_FLAG and f["loo_flag"]
    preds = pd.DataFrame({"model": "m", "task": "t", "strategy": "s", "prompt_tokens": [100, 120],
                          "completion_tokens": [10, 20], "answer_mode": "generate", "n_samples": 1, "error": None})
    est = lm.estimate_summary(lm.apply(preds, {"m": {**f, "source": "calibration", "label": "estimate"}}))
    assert est["est_fit_flag"] and est["est_fit_mape"] == pytest.approx(f["loo_mape"])
    head, rows = summary_table(pd.DataFrame([{"task": "t", "model": "m", "strategy": "s", "n": 2, **est}]))
    assert "unreliable" in rows[0][head.index("est. fit error")]


def _cot_like(req):
    """Outputs of 40-200 tokens (a chain of thought), timed by the linear truth; short answers otherwise."""
    p = sum(len(m.content.split()) for m in req.messages)
    want = 40 + (p * 37) % 160 if req.sampling.max_tokens > 64 else 3 + p % 5
    o = min(want, req.sampling.max_tokens)
    return Completion(texts=(" ".join(["so"] * o),), prompt_tokens=p, completion_tokens=(o,), finish_reasons=("stop",),
                      latency_s=_truth(p, o), ttft_s=A_T + B_T * p)


def test_the_long_calibration_request_covers_the_runs_long_outputs(tmp_path):
    seen = []

    def fn(req):
        seen.append(req.sampling.max_tokens)
        return _cot_like(req)

    df = harness.run(["coin_flip"], ["zero_shot", "cot"], backend=ScriptedBackend(fn), limit=50, out=tmp_path / "r",
                     progress=False, write_report=False, cache=False)  # 100 units: the full calibration
    cot = df[df["strategy"] == "cot"]["completion_tokens"]
    calib = pd.read_parquet(tmp_path / "r" / "calibration.parquet")
    assert len(calib) == lm.DEFAULT_CALIBRATION
    assert calib["completion_tokens"].max() >= np.quantile(cot, 0.9)  # decodes the run's p90 output
    assert max(seen[100 + 1:]) == lm.long_cap([r for r in df.to_dict("records")]) <= lm.LONG_CAP_MAX
    s = pd.read_csv(tmp_path / "r" / "summary.csv").set_index("strategy")
    assert s.loc["cot", "est_extrapolated_share"] <= 0.10
    assert s.loc["cot", "est_latency_p50_s"] == pytest.approx(_truth(df.loc[cot.index, "prompt_tokens"], cot).median())


def _timed(scale):
    """The linear truth, `scale` times slower: a second model on the same machine."""
    def fn(req):
        c = _linear(req)
        return Completion(texts=c.texts, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                          finish_reasons=c.finish_reasons, latency_s=scale * c.latency_s, ttft_s=scale * c.ttft_s)
    return fn


@pytest.mark.parametrize("limit, rule", [(20, "reduced"), (50, "full")])
def test_every_model_of_a_multi_model_run_is_calibrated_by_one_rule(tmp_path, limit, rule):
    """Two models (the second twice as slow), 2 strategies: at 40 units per model both get the reduced
    calibration, at 100 both the full one (the bug: the second model counted the first model's rows)."""
    backends = {}

    def make(name, url):
        backends[name] = ScriptedBackend(_timed(1.0 if name == "fast" else 2.0), model_name=name)
        return backends[name]

    df = harness.run(["coin_flip"], ["zero_shot", "few_shot:k=2"], models=["fast", "slow"], backend=make, limit=limit,
                     out=tmp_path / "r", progress=False, cache=False, write_report=False)
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    for m in ("fast", "slow"):
        assert meta["per_model"][m]["calibration"]["rule"] == rule
        assert meta["latency_model"]["models"][m]["source"] == "calibration"
        assert backends[m].calls.count(1) == 1 + (lm.REDUCED_CALIBRATION if rule == "reduced" else
                                                  lm.DEFAULT_CALIBRATION)
    s = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert len(s) == 4 and s["est_latency_p50_s"].notna().all()
    assert set(s["latency_source"]) == {"estimate-reduced" if rule == "reduced" else "estimate"}
    by = s.set_index(["strategy", "model"])["est_latency_p50_s"]
    for strat in ("zero_shot", "few_shot:k=2"):  # the injected 2x, recovered from each model's own calibration
        assert by[(strat, "slow")] / by[(strat, "fast")] == pytest.approx(2.0, rel=1e-6)
    assert df["est_latency_s"].notna().all()


def test_a_model_added_to_a_finished_run_gets_the_same_rule(tmp_path):
    kw = dict(tasks=["coin_flip"], strategies=["zero_shot"], limit=20, out=tmp_path / "r", progress=False, cache=False)
    harness.run(backend=ScriptedBackend(_timed(1.0), model_name="first"), write_report=False, **kw)
    harness.run(backend=ScriptedBackend(_timed(3.0), model_name="added"), write_report=False, **kw)
    s = pd.read_csv(tmp_path / "r" / "summary.csv").set_index("model")
    assert set(s["latency_source"]) == {"estimate-reduced"}
    assert s.loc["added", "est_latency_p50_s"] / s.loc["first", "est_latency_p50_s"] == pytest.approx(3.0, rel=1e-6)


def test_a_small_run_reuses_the_cached_calibration_labelled_with_its_date(tmp_path):
    from harness.reports.report_format import shown_latency
    from harness.runs import calibration_cache as cc

    kw = dict(progress=False, write_report=False, cache_dir=tmp_path / "cache")
    harness.run(["coin_flip"], ["zero_shot", "few_shot:k=2"], backend=ScriptedBackend(_linear), limit=50,
                out=tmp_path / "big", **kw)
    (stored,) = (tmp_path / "cache" / "calibrations").glob("*.json")
    assert json.loads(stored.read_text())["kind"] == "full"
    small = ScriptedBackend(_linear)
    df = harness.run(["coin_flip"], ["cot"], backend=small, limit=20, out=tmp_path / "small", **kw)
    assert small.calls == [20]  # no request of its own: the cached calibration
    meta = json.loads((tmp_path / "small" / "run.json").read_text())
    day = json.loads(stored.read_text())["date"]
    assert meta["calibration"]["rule"] == "reused" and meta["calibration"]["reused"]["date"] == day
    fit = meta["latency_model"]["models"]["scripted"]
    assert fit["source"] == "reused calibration" and fit["n"] == lm.DEFAULT_CALIBRATION
    assert f"calibrated {day} on this machine" in fit["label"]
    s = pd.read_csv(tmp_path / "small" / "summary.csv").iloc[0]
    assert s["latency_source"] == "estimate-reused" and f"calibrated {day} on this machine" in s["est_calibration"]
    assert shown_latency(s)[2].endswith(f"est., calibrated {day}")
    truth = _truth(df["prompt_tokens"], df["completion_tokens"])
    assert s["est_latency_p50_s"] == pytest.approx(truth.median(), rel=1e-6)
    # another model, engine setting or machine is another key; a reduced calibration never replaces a full one
    other = ScriptedBackend(_linear, model_name="other")
    assert cc.key(other) != cc.key(small) and cc.load(tmp_path / "cache", cc.key(other)) is None
    assert cc.store(tmp_path / "cache", cc.key(small), [{"prompt_tokens": 1}], kind="reduced", model="m") is None
    assert json.loads(stored.read_text())["kind"] == "full"
