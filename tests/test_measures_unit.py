"""Unit tests of the measures' bookkeeping (docs/measures.md) with the scripted backend: chunking per
group, the probe's plan and waves, hourly $, cached rows, the verdict's $ rule and old run folders.
The measurements themselves are tested on the real engine in tests/test_measures.py."""
from __future__ import annotations

import json
import time

import pandas as pd
import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.reports.report import write_compare, write_report
from harness.reports.verdicts import verdicts
from harness.runs.results import RENAMED_PREDICTION_COLUMNS, RENAMED_SUMMARY_COLUMNS
from harness.runs.runner import _chunks
from harness.runs.units import build_units
from harness.strategy.strategies import parse_strategy
from harness.task.tasks import load_task

YES = "The answer is yes."


def _slow(delay: float):
    def fn(req):
        time.sleep(delay)
        return YES
    return fn


def _units(strategies, limit):
    return build_units([load_task("coin_flip")], [parse_strategy(s) for s in strategies], limit=limit, seed=0)


def test_chunks_never_mix_groups_and_keep_their_size():
    units = _units(["zero_shot", "few_shot:k=2", "cot"], 7)
    chunks = list(_chunks(units, 3))
    assert [len(c) for c in chunks] == [3, 3, 1] * 3
    assert all(len({u.strategy.spec for u in c}) == 1 for c in chunks)
    mixed = list(_chunks(units, 3, by_group=False))  # the old behaviour: 21 units in chunks of 3
    assert [len(c) for c in mixed] == [3] * 7 and any(len({u.strategy.spec for u in c}) > 1 for c in mixed)


def test_hourly_price_gives_dollars_from_the_measured_engine_time(tmp_path):
    out = tmp_path / "r"
    df = harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(_slow(0.02)), limit=4, out=out,
                     progress=False, write_report=False, latency_probe=0, cache=False, hourly_usd=3.6)
    share = df["engine_s_share"]
    assert share.notna().all() and share.nunique() == 1 and share.iloc[0] >= 0.02  # 4 x 20 ms in one call / 4
    assert df["cost_usd"].tolist() == pytest.approx((share * 3.6 / 3600).tolist())
    s = pd.read_csv(out / "summary.csv").iloc[0]
    assert s["cost_per_example_usd"] == pytest.approx(s["engine_s_per_example"] * 3.6 / 3600)
    meta = json.loads((out / "run.json").read_text())
    assert meta["pricing"]["hourly_usd"] == 3.6 and meta["pricing"]["hourly_source"] == "--hourly-usd"


def test_hourly_price_from_the_table_and_the_flag_wins(tmp_path):
    from harness.stats.pricing import parse_price_table

    table = parse_price_table({"scripted": {"hourly_usd": 1.0}, "other": {"input": 1, "output": 2}}, where="t")
    kw = dict(backend=ScriptedBackend(lambda r: YES), limit=2, progress=False, write_report=False, latency_probe=0,
              cache=False, price_table=table)
    harness.run(["coin_flip"], ["zero_shot"], out=tmp_path / "a", **kw)
    harness.run(["coin_flip"], ["zero_shot"], out=tmp_path / "b", hourly_usd=7.0, **kw)
    a = json.loads((tmp_path / "a" / "run.json").read_text())["pricing"]
    b = json.loads((tmp_path / "b" / "run.json").read_text())["pricing"]
    assert (a["hourly_usd"], a["hourly_source"]) == (1.0, "price table")
    assert (b["hourly_usd"], b["hourly_source"]) == (7.0, "--hourly-usd")


def test_probe_waves_at_a_concurrency_and_a_resumed_run_does_not_probe_again(tmp_path):
    backend = ScriptedBackend(lambda r: YES)
    out = tmp_path / "r"
    harness.run(["coin_flip"], ["zero_shot", "few_shot:k=2"], backend=backend, limit=5, out=out, progress=False,
                write_report=False, cache=False, latency_probe=3, probe_concurrency=2)
    assert backend.calls == [5, 5, 1, 2, 2, 2]  # two group calls, a warm-up, 6 probe items in waves of 2
    p = pd.read_parquet(out / "probes.parquet")
    assert len(p) == 6 and (p["probe_concurrency"] == 2).all() and p["wave"].nunique() == 3
    again = ScriptedBackend(lambda r: YES)
    harness.run(["coin_flip"], ["zero_shot", "few_shot:k=2"], backend=again, limit=6, out=out, progress=False,
                write_report=False, cache=False, latency_probe=3)
    assert again.calls == [1, 1]  # the new item of each group; both groups were probed already
    assert len(pd.read_parquet(out / "probes.parquet")) == 6


def test_cached_rows_are_flagged_and_in_no_time_figure(tmp_path):
    kw = dict(limit=4, progress=False, cache_dir=tmp_path / "cache", latency_probe=0, report=True)
    harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(_slow(0.01)), out=tmp_path / "a", **kw)
    harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(_slow(0.01)), out=tmp_path / "b", **kw)
    s = pd.read_csv(tmp_path / "b" / "summary.csv").iloc[0]
    assert s["cached_rows"] == 4
    for col in ("engine_s_per_example", "tokens_per_s", "batch_latency_p50_s"):
        assert pd.isna(s.get(col)), col  # absent or empty
    md = (tmp_path / "b" / "report.md").read_text()
    assert "cached rows" in md and "– (all cached)" in md
    paths = write_compare([tmp_path / "a", tmp_path / "b"], out=tmp_path / "cmp")
    cmp_md = paths[1].read_text()
    assert "475" not in cmp_md and "– (all cached)" in cmp_md


def test_verdict_uses_dollars_whenever_a_price_is_set():
    summary = pd.DataFrame([
        {"task": "t", "model": "m", "strategy": "a", "n": 10, "accuracy": 0.8, "ci_low": 0.5, "ci_high": 0.9,
         "mean_prompt_tokens": 50, "mean_completion_tokens": 10, "cost_per_example_usd": 0.002},
        {"task": "t", "model": "m", "strategy": "b", "n": 10, "accuracy": 0.7, "ci_low": 0.4, "ci_high": 0.9,
         "mean_prompt_tokens": 20, "mean_completion_tokens": 10, "cost_per_example_usd": float("nan")},
        {"task": "t", "model": "m", "strategy": "c", "n": 10, "accuracy": 0.7, "ci_low": 0.4, "ci_high": 0.9,
         "mean_prompt_tokens": 400, "mean_completion_tokens": 10, "cost_per_example_usd": 0.001},
    ])
    pairs = pd.DataFrame([{"task": "t", "model": "m", "strategy_a": "a", "strategy_b": x, "p_holm": 0.5}
                          for x in ("b", "c")])
    v = verdicts(summary, pairs)[0]
    # by tokens b would be cheapest; by $ (b has no cost known) it is c
    assert v["cheapest"] == "c" and "$0.001 per example" in v["text"]


def test_old_run_folders_are_read_with_the_new_column_names(tmp_path):
    out = tmp_path / "old"
    harness.run(["coin_flip"], ["zero_shot", "cot"], backend=ScriptedBackend(lambda r: YES), limit=3, out=out,
                progress=False, write_report=False, latency_probe=0, cache=False)
    preds = pd.read_parquet(out / "predictions.parquet")
    old = preds.drop(columns=["engine_s_share"]).rename(columns={v: k for k, v in RENAMED_PREDICTION_COLUMNS.items()})
    old["latency_s"] = 1.5
    old.to_parquet(out / "predictions.parquet", index=False)
    summ = pd.read_csv(out / "summary.csv")
    keep = [c for c in summ.columns if not c.startswith(("probe_", "engine_s", "tokens_per", "completion_tokens_per"))]
    summ[keep].rename(columns={v: k for k, v in RENAMED_SUMMARY_COLUMNS.items()}).to_csv(out / "summary.csv", index=False)
    (out / "probes.parquet").unlink()
    md = write_report(out)[1].read_text()
    assert "time in batch p50 (s)" in md and "| 1.50 | 1.50 |" in md  # the old latency_s, read as time in batch
    html = (out / "report.html").read_text()
    assert "Request time in this batch (not single-request latency)" in html
    write_compare([out, out], out=tmp_path / "cmp")
