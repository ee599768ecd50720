"""Server faults on a REAL vLLM server, through a fault-injecting proxy (tests/faultproxy.py).

Each test runs coin_flip x zero_shot on 8 examples through `OpenAIBackend([proxy.url])` while the proxy
injects one fault: 5xx, 429 + Retry-After, a hang past the timeout, a server killed mid-run, a connection
dropped mid-stream, a server unreachable at start. The goal, checked row by row: nothing is lost; a row
that could not be answered carries an error (never a wrong answer) and a resume completes exactly it.
docs/faults.md describes the same cases.

One server for this module and test_secrets.py (which imports the `vllm_server` fixture): it stays up
between the two modules only when a later test still needs it, and is stopped by its PID at the end.
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import harness
from faultproxy import FaultProxy
from harness.backends.openai import OpenAIBackend

pytestmark = pytest.mark.server

N = 8
ROOT = Path(__file__).resolve().parents[1]
_SERVER: dict = {}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def vllm_server(request):
    """A real `harness serve` server on the bundled model, shared with later modules that use it."""
    from harness.backends.serve import serve

    handle = _SERVER.get("handle")
    if handle is None or not handle.alive():
        handle = serve(kv_cache_gib=1, timeout_s=300)
        _SERVER["handle"] = handle
        atexit.register(handle.stop)  # a session cut short (-x) still stops it
        OpenAIBackend(handle.url, concurrency=1).generate(_requests(1))  # warm up before timed tests
    try:
        yield handle
    finally:
        if request.session.shouldstop or request.session.shouldfail or not _needed_later(request):
            handle.stop()
            assert handle.process.poll() is not None, f"server pid {handle.pid} still running"
            _SERVER.pop("handle", None)


def _needed_later(request) -> bool:
    items = request.session.items
    mine = [i for i, it in enumerate(items) if getattr(it, "module", None) is request.module]
    return any("vllm_server" in it.fixturenames for it in items[max(mine, default=len(items)) + 1:])


@pytest.fixture(scope="module")
def proxy(vllm_server):
    with FaultProxy(vllm_server.url) as p:
        yield p


@pytest.fixture(autouse=True)
def _pass_mode(proxy):
    proxy.set_mode("pass")
    yield
    proxy.set_mode("pass")


# --------------------------------------------------------------------------- helpers

def _requests(k: int):
    from harness.strategy.strategies import parse_strategy
    from harness.task.tasks import load_task

    task, strat = load_task("coin_flip"), parse_strategy("zero_shot")
    return [strat.expand(task, ex)[0] for ex in task.examples[:k]]


def _question(i: int) -> str:
    """The line of example i's prompt that no other example shares ('Q: A coin is heads up. ...')."""
    return _requests(i + 1)[i].messages[-1].content.strip().splitlines()[-1]


def _run(proxy: FaultProxy, out: Path, *, timeout_s: float = 10, max_retries: int = 3, **kw):
    backend = OpenAIBackend([proxy.url], concurrency=2, timeout_s=timeout_s, max_retries=max_retries,
                            backoff_base_s=0.05)
    t0 = time.perf_counter()
    df = harness.run(["coin_flip"], ["zero_shot"], backend=backend, limit=N, out=out, progress=False,
                     write_report=False, cache=False, latency_probe=0, **kw)
    return df, backend, time.perf_counter() - t0


def _assert_complete(df: pd.DataFrame) -> None:
    """8 rows, one per example, every one answered in full (no error, a finish reason, an answer scored)."""
    assert len(df) == N and df["example_id"].is_unique
    assert df["error"].isna().all(), df["error"].dropna().tolist()
    assert df["finish_reason"].notna().all() and (df["output"].str.len() > 0).all()
    assert df["correct"].notna().all() and (df["completion_tokens"] > 0).all()
    assert df["batch_ttft_s"].notna().all()  # streamed through the proxy: time to first token is still measured


def _summary(out: Path) -> dict:
    return pd.read_csv(out / "summary.csv").iloc[0].to_dict()


def _journal_keys(out: Path) -> list[str]:
    return [json.loads(line)["p"]["example_id"] for line in (out / "journal.jsonl").read_text().splitlines()]


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


KEEP = ["example_id", "output", "answer", "batch_latency_s", "batch_ttft_s", "completion_tokens"]


# --------------------------------------------------------------------------- the faults

def test_5xx_below_the_retry_bound_loses_nothing(proxy, tmp_path):
    proxy.set_mode("status", count=3, codes=(500, 503))
    since = time.monotonic()
    df, backend, _ = _run(proxy, tmp_path / "run", max_retries=3)
    _assert_complete(df)
    faults = proxy.posts("status", since=since)
    assert sorted({h.action for h in faults}) == ["status:500", "status:503"] and len(faults) == 3
    assert len(proxy.posts(since=since)) == N + 3                  # the proxy saw the three retries
    assert sum(backend.last_attempts.values()) == N + 3
    for hit in faults:                                              # each failed attempt was tried again
        assert [h.action for h in proxy.posts(since=since) if h.text == hit.text][-1] == "pass"
    assert _summary(tmp_path / "run")["errors"] == 0


def test_429_honours_retry_after(proxy, tmp_path):
    proxy.set_mode("rate_limit", count=2, retry_after=1)
    since = time.monotonic()
    df, backend, elapsed = _run(proxy, tmp_path / "run", max_retries=2)
    _assert_complete(df)
    limited = proxy.posts("rate_limit", since=since)
    assert len(limited) == 2 and elapsed >= 1.0
    for hit in limited:  # the retry came after Retry-After (1 s), not after the 0.05 s backoff
        retry = next(h for h in proxy.posts(since=since) if h.text == hit.text and h.t > hit.t)
        assert retry.t - hit.t >= 0.95, retry.t - hit.t
    assert _summary(tmp_path / "run")["errors"] == 0


def test_hang_past_the_timeout_then_resume_completes_those_rows(proxy, tmp_path):
    out = tmp_path / "run"
    stuck = {_question(i) for i in (2, 5)}
    ids = {"coin-1-00002", "coin-1-00005"}
    proxy.set_mode("hang", count=100, match=tuple(stuck))  # more than the retry bound
    since = time.monotonic()
    df, _, elapsed = _run(proxy, out, timeout_s=3, max_retries=1)
    print(f"\nhang: {elapsed:.1f} s, errors: {df['error'].dropna().tolist()}")
    bad = df[df["error"].notna()]
    assert set(bad["example_id"]) == ids
    assert bad["error"].str.contains("timed out").all() and bad["error"].str.contains("after 2 attempts").all()
    assert bad["correct"].isna().all()                    # an error is not a wrong answer
    assert len(proxy.posts("hang", since=since)) == 4     # 2 rows x (1 + max_retries)
    good = df[df["error"].isna()]
    assert len(good) == N - 2 and good["correct"].notna().all()
    summary = _summary(out)
    assert summary["errors"] == 2 and summary["n"] == N - 2
    assert json.loads((out / "run.json").read_text())["status"] == "complete"  # the run went on and finished

    proxy.set_mode("pass")
    since = time.monotonic()
    again, _, _ = _run(proxy, out)                         # same out: resume, retry_errors=True
    _assert_complete(again)
    redone = proxy.posts(since=since)
    assert len(redone) == 2 and {h.text.splitlines()[-1] for h in redone} == stuck
    keep = again[~again["example_id"].isin(ids)][KEEP].reset_index(drop=True)
    pd.testing.assert_frame_equal(keep, good[KEEP].reset_index(drop=True), check_dtype=False)  # the 6 done rows are untouched
    journal = _journal_keys(out)   # appended to, never rewritten: the redone rows' later lines win on read
    assert len(journal) == N + 2 and all(journal.count(i) == 2 for i in ids)
    assert _summary(out)["errors"] == 0 and _summary(out)["n"] == N


def test_server_killed_mid_run_then_retry_errors_cli(proxy, tmp_path):
    out = tmp_path / "run"
    proxy.set_mode("down", after=4)   # 4 requests answered, then the "server" dies: refused, connections cut
    df, _, _ = _run(proxy, out, max_retries=1, chunk_size=2)
    assert proxy.mode == "down"
    done, failed = df[df["error"].isna()], df[df["error"].notna()]
    print(f"\nkilled: {len(done)} rows done, {len(failed)} errors: {failed['error'].iloc[0]}")
    assert len(df) == N and len(done) == 4 and len(failed) == 4
    assert failed["error"].str.contains("connection").all() and failed["correct"].isna().all()
    assert _summary(out)["errors"] == 4

    proxy.set_mode("pass")                                  # the server is back
    since = time.monotonic()
    proc = _cli("run", "--retry-errors", str(out), "--latency-probe", "0", "--backend", "openai", "--base-url", proxy.url,
                "--max-retries", "1", "--no-cache", "--no-report", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    final = pd.read_parquet(out / "predictions.parquet")
    _assert_complete(final)
    assert len(proxy.posts(since=since)) == 4               # exactly the failed rows were sent again
    keep = final[final["example_id"].isin(done["example_id"])][KEEP].reset_index(drop=True)
    pd.testing.assert_frame_equal(keep, done[KEEP].reset_index(drop=True), check_dtype=False)  # the done rows are intact
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and meta["rows"] == N and meta["resumes"][-1]["pending"] == 4


def test_connection_dropped_mid_stream_is_retried(proxy, tmp_path):
    proxy.set_mode("drop", count=3, drop_after_bytes=1000)  # a few SSE events in, after some text arrived
    since = time.monotonic()
    df, backend, _ = _run(proxy, tmp_path / "run", max_retries=2)
    _assert_complete(df)                                    # no half text kept: every row has a finish reason
    assert len(proxy.posts("drop", since=since)) == 3
    assert sum(backend.last_attempts.values()) == N + 3
    assert _summary(tmp_path / "run")["errors"] == 0


def test_unreachable_at_start_leaves_the_run_folder_untouched(proxy, tmp_path):
    out = tmp_path / "run"
    proxy.set_mode("pass")
    harness.run(["coin_flip"], ["zero_shot"], backend=OpenAIBackend([proxy.url], concurrency=2), limit=2,
                out=out, progress=False, write_report=False, cache=False)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*"))}
    proxy.set_mode("down")
    # the resume names the backend (the run's was an object) and keeps the run's own latency measures
    for args in (["--task", "coin_flip", "--strategy", "zero_shot", "--limit", "4", "--out", str(out),
                  "--latency-probe", "0"], ["--retry-errors", str(out)]):
        proc = _cli("run", "--backend", "openai", "--base-url", proxy.url, "--no-cache", *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("error:") and "cannot reach the server" in lines[0], lines
        assert proc.stdout == ""
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*"))}
    assert after == before
