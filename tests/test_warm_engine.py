"""The warm engine on the real engine (issue 27), as a user runs it: `harness engine start`, `harness run`
as whole commands, `harness engine stop`. One daemon for the session (tests/conftest.py `warm_engine`, float32), stopped here by the stop test, and
one more for the SIGKILL test; 4-6 items per cell.

- warm and cold give identical non-timing columns for generation, self-consistency (n = k), guided JSON
  and log-likelihood, whose prefix reuse still reads the cache (cached prompt tokens > 0);
- a run whose engine options differ starts its own engine, never the warm one;
- SIGKILL of a run leaves the warm engine alive and usable, and the run resumes on it;
- `harness engine stop` leaves no process; SIGKILL of the daemon mid-run leaves none of its engine's
  processes 10 s later, and the run stops with its resume command.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from proctree import tree, wait_all_gone

pytestmark = pytest.mark.engine
ENGINE_FLAGS = ["--dtype", "float32"]
SUITE = """suite:
  coin_flip: [zero_shot, "self_consistency:k=3"]
  sentiment: ["zero_shot:answer_mode=loglikelihood"]
  contact_json: ["zero_shot:guided=true"]
limit: 4
"""
# what depends on the moment or the engine's state, not on the answer
VOLATILE = ("run_id", "latency_s", "ttft_s", "tpot_s", "wall_s", "cached_prompt_tokens", "engine_s", "batch_",
            "est_", "probe_")


def _harness(*args: str, env: dict, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, **kw)


def _env(rt: Path, **extra: str) -> dict:
    return {**os.environ, "HARNESS_RUNTIME_DIR": str(rt), **extra}


def _state(rt: Path) -> dict:
    return json.loads((rt / "engine.json").read_text())


def _start(rt: Path) -> dict:
    r = _harness("engine", "start", *ENGINE_FLAGS, "--idle", "10", env=_env(rt))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "warm engine ready" in r.stdout, r.stdout
    return _state(rt)


def _daemon_tree(state: dict) -> dict[int, int]:
    return tree(int(state["pid"]))


@pytest.fixture
def warm(warm_engine):
    """The session's warm engine (tests/conftest.py); test_engine_stop_leaves_no_process stops it."""
    rt, state = warm_engine
    if not (rt / "engine.json").exists():
        pytest.fail("the session's warm engine was stopped by an earlier test")
    return rt, state


def _run(rt: Path, out: Path, *extra: str, warm_env: str = "1", exp: Path | None = None):
    args = ["run", *([str(exp)] if exp else []), *ENGINE_FLAGS, "--no-cache", "--no-report", "--quiet",
            "--latency-calibration", "0",
            "--out", str(out), *extra]
    return _harness(*args, env=_env(rt, HARNESS_WARM=warm_env))


def _stable(df: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in df.columns if not any(c.startswith(v) or c == v for v in VOLATILE)]
    return df[keep].sort_values(["task", "strategy", "example_id"]).reset_index(drop=True)


def test_warm_and_cold_give_identical_answers(warm, tmp_path):
    rt, state = warm
    exp = tmp_path / "suite.yaml"
    exp.write_text(SUITE)
    cold = _run(rt, tmp_path / "cold", warm_env="0", exp=exp)
    assert cold.returncode == 0, cold.stderr[-3000:]
    assert "warm engine" not in cold.stderr
    hot = _run(rt, tmp_path / "warm", exp=exp)
    assert hot.returncode == 0, hot.stderr[-3000:]
    assert f"using the warm engine (pid {state['pid']}" in hot.stderr
    meta = json.loads((tmp_path / "warm" / "run.json").read_text())
    assert meta["engine"]["warm_engine"]["pid"] == state["pid"] and meta["backend"] == "vllm"
    cold_meta = json.loads((tmp_path / "cold" / "run.json").read_text())
    assert "warm_engine" not in cold_meta["engine"]
    assert cold_meta["config"] == meta["config"]  # model, model_spec ('bundled'), path, tasks, ... as a cold run
    assert cold_meta["engine"] == {k: v for k, v in meta["engine"].items() if k != "warm_engine"}
    a, b = (pd.read_parquet(tmp_path / d / "predictions.parquet") for d in ("cold", "warm"))
    assert len(a) == len(b) == 16
    pd.testing.assert_frame_equal(_stable(a), _stable(b))
    guided = b[(b["task"] == "contact_json") & (b["finish_reason"] == "stop")]
    assert len(guided) >= 2, b[b["task"] == "contact_json"][["finish_reason", "output"]]
    for text in guided["output"]:
        assert isinstance(json.loads(text), dict)  # guided output parses, and against the task's schema:
    assert guided["schema_valid"].all()
    ll = b[b["answer_mode"] == "loglikelihood"]
    # prefix reuse still reads the cache: every item after the first finds the shared prefix there
    assert len(ll) == 4 and (ll["cached_prompt_tokens"] > 0).sum() >= 3, ll["cached_prompt_tokens"]
    sa, sb = (pd.read_parquet(tmp_path / d / "samples.parquet") for d in ("cold", "warm"))
    assert len(sb[sb["strategy"].str.startswith("self_consistency")]) == 4 * 3  # n = k samples came back
    key = ["task", "strategy", "example_id", "sample_idx"]
    pd.testing.assert_frame_equal(sa.drop(columns="run_id").sort_values(key).reset_index(drop=True),
                                  sb.drop(columns="run_id").sort_values(key).reset_index(drop=True))


def test_other_engine_options_never_use_the_warm_engine(warm, capsys):
    from harness.backends.vllm import VLLMBackend
    from harness.backends.warm import WarmBackend, attach

    rt, state = warm
    os.environ["HARNESS_RUNTIME_DIR"], old = str(rt), os.environ.get("HARNESS_RUNTIME_DIR")
    try:
        other = VLLMBackend(dtype="float32", max_model_len=1024)  # not started: attach only compares settings
        assert attach(other) is other
        assert "max_model_len 2048 vs 1024" in capsys.readouterr().err
        assert isinstance(attach(VLLMBackend(dtype="float32")), WarmBackend)
    finally:
        if old is None:
            del os.environ["HARNESS_RUNTIME_DIR"]
        else:
            os.environ["HARNESS_RUNTIME_DIR"] = old


def _wait_journal(out: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"no journal line before the run ended ({proc.poll()})")


def _popen_run(rt: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "harness.cli", "run", "--task", "coin_flip", "--strategy", "zero_shot",
           "--strategy", "cot", "--limit", "6", "--chunk-size", "2", *ENGINE_FLAGS, "--no-cache", "--no-report",
           "--latency-calibration", "0",
           "--quiet", "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(rt))


def test_sigkill_of_a_run_leaves_the_warm_engine_usable(warm, tmp_path):
    rt, state = warm
    out = tmp_path / "r"
    proc = _popen_run(rt, out)
    _wait_journal(out, proc)
    run_tree = tree(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_all_gone(run_tree, 10) == []
    assert _state(rt)["pid"] == state["pid"] and tree(int(state["pid"]))  # the engine is alive
    r = _harness("run", "--resume", str(out), "--quiet", "--no-report", env=_env(rt))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"using the warm engine (pid {state['pid']}" in r.stderr
    df = pd.read_parquet(out / "predictions.parquet")
    assert len(df) == 12 and not df.duplicated(["strategy", "example_id"]).any()


def test_engine_stop_leaves_no_process(warm):
    rt, state = warm
    recorded = _daemon_tree(state)
    assert len(recorded) >= 2, recorded  # the daemon and its engine
    r = _harness("engine", "stop", env=_env(rt), timeout=120)
    assert r.returncode == 0, r.stderr
    assert wait_all_gone(recorded, 10) == []
    assert not (rt / "engine.json").exists() and not (rt / "engine.sock").exists()
    r = _harness("engine", "stop", env=_env(rt))
    assert r.returncode == 2 and "no warm engine is running" in r.stderr


def test_sigkill_of_the_warm_engine_mid_run_stops_the_run_with_its_resume_command(tmp_path):
    rt = tmp_path / "rt2"
    state = _start(rt)
    recorded = _daemon_tree(state)
    out = tmp_path / "r"
    proc = _popen_run(rt, out)
    try:
        _wait_journal(out, proc)
        recorded.update(_daemon_tree(state))
        os.kill(int(state["pid"]), signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "warm engine" in last and f"harness run --resume {out}" in last, err[-2000:]
    assert wait_all_gone(recorded, 10) == []  # the daemon's watchdog removed its engine
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    kept = len(pd.read_parquet(out / "predictions.parquet"))
    assert 2 <= kept < 12
    r = _harness("engine", "status", env=_env(rt))
    assert r.returncode == 1 and not (rt / "engine.json").exists()  # the stale state is removed
