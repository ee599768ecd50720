"""Throughput cost, the single-request latency probe and the in-batch times (docs/measures.md), on the
real vLLM engine with the bundled model, checked against raw vLLM calls on the same prompts.

Two runs measure the same strategy (person_json, few_shot:k=3) with different batch mates in a different
order; its probe p50 latency and its throughput cost must agree within 20 %. These are ratios of two
measurements made a minute apart in one process; on a machine shared with other engines they are the
figure this test can check (the bench row PROBE measures the cost of the measures)."""
from __future__ import annotations

import json
import statistics
import time

import pandas as pd
import pytest

import harness
from harness.backends.chat import to_chat_messages
from harness.backends.vllm import to_sampling_params
from harness.runs.units import build_units
from harness.strategy.strategies import parse_strategy
from harness.task.tasks import load_task

LIMIT = 8
PROBE = 4
CALIB = 5
FEW = "few_shot:k=3"


def _two_runs(engine, tmp) -> dict:
    kw = dict(backend=engine, limit=LIMIT, progress=False, write_report=False, cache=False, latency_probe=PROBE)
    # run a also calibrates the latency model (5 requests), to check its estimates against the direct probe
    harness.run(["person_json"], [FEW, "zero_shot"], out=tmp / "a", latency_calibration=CALIB, **kw)
    harness.run(["coin_flip", "person_json"], [FEW], out=tmp / "b", **kw)  # new batch mates, person_json second
    out = {}
    for name in ("a", "b"):
        s = pd.read_csv(tmp / name / "summary.csv")
        out[name] = {"summary": s.set_index(["task", "strategy"]),
                     "probes": pd.read_parquet(tmp / name / "probes.parquet"),
                     "preds": pd.read_parquet(tmp / name / "predictions.parquet"),
                     "run": json.loads((tmp / name / "run.json").read_text())}
    return out


@pytest.fixture(scope="module")
def two_runs(engine, tmp_path_factory):
    return _two_runs(engine, tmp_path_factory.mktemp("measures"))


def _ratios(runs: dict) -> dict[str, float]:
    a, b = runs["a"]["summary"].loc[("person_json", FEW)], runs["b"]["summary"].loc[("person_json", FEW)]
    ratios = {col: a[col] / b[col] for col in ("probe_latency_p50_s", "engine_s_per_example")}
    for col, ratio in ratios.items():
        print(f"{col}: {a[col]:.3f} vs {b[col]:.3f} (ratio {ratio:.2f})")
    return ratios


def test_probe_rows_are_flagged_and_never_scored(two_runs):
    a = two_runs["a"]
    assert len(a["preds"]) == 2 * LIMIT  # the probe added no prediction rows
    p = a["probes"]
    assert len(p) == 2 * PROBE and p["probe"].all() and p["error"].isna().all()
    assert "correct" not in p.columns
    assert (p["ttft_s"] > 0).all() and (p["ttft_s"] <= p["latency_s"]).all()
    # the client's wall time bounds the engine's arrival -> last token, up to the clock skew between the
    # frontend and the engine-core process (measured: a few ms)
    assert (p["latency_s"] <= p["wall_s"] + 0.05).all()
    assert (p["tpot_s"] > 0).all()
    assert a["run"]["probe"]["items_per_group"] == PROBE and a["run"]["probe"]["concurrency"] == 1
    assert a["run"]["probe"]["prefix_cache"] == "emptied before each call"
    assert (p["cached_prompt_tokens"].fillna(0) == 0).all()  # each probe request paid its whole prompt


def test_same_strategy_in_two_runs_agrees_within_20_percent(engine, two_runs, tmp_path):
    """A pair of runs a minute apart on a shared 2-core machine: a slow minute once put one engine time 26 %
    off (1.00 vs 1.26 s; alone right after, 1.07). So a pair outside the bound is measured once more, and the
    second pair must agree: a harness that timed the queue or the batch mates would miss in both pairs (the
    bias repeats with the batch), while one noisy minute does not fail the suite."""
    ratios = _ratios(two_runs)
    if not all(1 / 1.2 <= r <= 1.2 for r in ratios.values()):
        ratios = _ratios(_two_runs(engine, tmp_path))
    assert all(1 / 1.2 <= r <= 1.2 for r in ratios.values()), ratios
    # the in-batch time is not a property of the strategy: it is reported apart, under its own name
    assert "batch_latency_p50_s" in two_runs["a"]["summary"].columns


def test_a_3x_longer_prompt_shows_a_higher_probe_ttft(two_runs):
    s = two_runs["a"]["summary"]
    few, zero = s.loc[("person_json", FEW)], s.loc[("person_json", "zero_shot")]
    assert few["mean_prompt_tokens"] >= 2.5 * zero["mean_prompt_tokens"]
    print(f"TTFT p50: {FEW} {few['probe_ttft_p50_s']:.4f} s ({few['mean_prompt_tokens']:.0f} prompt tokens), "
          f"zero_shot {zero['probe_ttft_p50_s']:.4f} s ({zero['mean_prompt_tokens']:.0f})")
    assert few["probe_ttft_p50_s"] > zero["probe_ttft_p50_s"]


def test_throughput_cost_is_the_groups_own_engine_time(two_runs):
    """Summed shares = the group's engine time; tokens/s = the group's tokens over it."""
    a = two_runs["a"]
    for strat, g in a["preds"].groupby("strategy"):
        row = a["summary"].loc[("person_json", strat)]
        assert g["engine_s_share"].notna().all() and g["engine_s_share"].nunique() == 1  # one call, equal shares
        assert row["engine_s_total"] == pytest.approx(g["engine_s_share"].sum())
        toks = g["prompt_tokens"].sum() + g["completion_tokens"].sum()
        assert row["tokens_per_s"] == pytest.approx(toks / row["engine_s_total"])


def test_probe_latency_matches_raw_vllm_single_requests(engine, two_runs):
    """The independent measurement: the same prompts sent by hand to `LLM.chat`, one at a time, from an
    empty prefix cache, timed by the wall clock around the call."""
    probes = two_runs["a"]["probes"]
    probes = probes[probes["strategy"] == FEW].set_index("example_id")
    task, strat = load_task("person_json"), parse_strategy(FEW)
    units = [u for u in build_units([task], [strat], limit=LIMIT, seed=0) if u.example.id in probes.index]
    assert len(units) == PROBE
    raw_wall, raw_metric, ours = [], [], []
    for u in units:
        req = u.requests[0]
        engine.llm.reset_prefix_cache()
        t = time.perf_counter()
        params = engine._sampling_params(to_sampling_params(req.sampling, req.output_type))
        out = engine.llm.chat([to_chat_messages(req)], params, use_tqdm=False)[0]
        raw_wall.append(time.perf_counter() - t)
        m = out.metrics
        raw_metric.append(m.first_token_latency + (m.last_token_ts - m.first_token_ts))
        row = probes.loc[u.example.id]
        assert len(out.outputs[0].token_ids) == row["completion_tokens"]  # the same work (greedy)
        ours.append(row["latency_s"])
    engine.llm.reset_prefix_cache()
    r_wall = statistics.median(ours) / statistics.median(raw_wall)
    r_metric = statistics.median(ours) / statistics.median(raw_metric)
    print(f"probe p50 {statistics.median(ours):.3f} s; raw wall p50 {statistics.median(raw_wall):.3f} s "
          f"(ratio {r_wall:.2f}); raw engine metric p50 {statistics.median(raw_metric):.3f} s (ratio {r_metric:.2f})")
    assert 0.75 <= r_wall <= 1.2 and 0.8 <= r_metric <= 1.25


def test_estimated_latency_agrees_with_the_direct_probe(two_runs):
    """The calibrated latency model (fitted on 5 capped requests of run a) against the probe's direct
    measurement of the same items: the estimate for each probed row (its own token counts) vs the latency
    the probe measured for it, per strategy."""
    a = two_runs["a"]
    assert a["run"]["calibration"]["requests"] == CALIB
    fit = next(iter(a["run"]["latency_model"]["models"].values()))
    assert fit["source"] == "calibration" and fit["n"] == CALIB
    print(f"fit: {fit['latency']}, leave-one-out MAPE {fit['loo_mape']:.3f}")
    preds = a["preds"].set_index(["strategy", "example_id"])
    assert preds["est_latency_s"].notna().all()
    for strat, g in a["probes"].groupby("strategy"):
        est = preds.loc[[(strat, e) for e in g["example_id"]], "est_latency_s"].to_numpy()
        ratio = statistics.median(est) / statistics.median(g["latency_s"])
        ttft = preds.loc[[(strat, e) for e in g["example_id"]], "est_ttft_s"].median() / g["ttft_s"].median()
        print(f"{strat}: estimate p50 {statistics.median(est):.3f} s vs probe p50 {g['latency_s'].median():.3f} s "
              f"(ratio {ratio:.2f}); TTFT ratio {ttft:.2f}")
        assert 1 / 1.5 <= ratio <= 1.5, (strat, ratio)
    s = a["summary"]
    assert s.loc[("person_json", FEW), "est_ttft_p50_s"] > s.loc[("person_json", "zero_shot"), "est_ttft_p50_s"]
    assert set(s["latency_source"]) == {"probe"}  # a direct probe ran: probe_* is what the report ranks by


def test_the_estimate_of_one_strategy_agrees_across_runs(two_runs):
    """The estimate is fair too: person_json few-shot's estimated p50 in run a (fitted on its calibration)
    and in run b (other batch mates, fitted on run b's probe requests) within 20 %."""
    a, b = two_runs["a"]["summary"].loc[("person_json", FEW)], two_runs["b"]["summary"].loc[("person_json", FEW)]
    assert two_runs["b"]["run"]["latency_model"]["models"]  # run b: fitted on its direct probe's requests
    ratio = a["est_latency_p50_s"] / b["est_latency_p50_s"]
    print(f"estimate p50: {a['est_latency_p50_s']:.3f} vs {b['est_latency_p50_s']:.3f} s (ratio {ratio:.2f})")
    assert 1 / 1.2 <= ratio <= 1.2
