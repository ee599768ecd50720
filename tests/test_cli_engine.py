"""The command line on the real engine, the way a user meets it: a background job stopped with SIGINT,
SIGTERM from a scheduler, SIGKILL, then `harness run --resume DIR` (the command the harness prints) to
exactly N rows under one model name. After every stop, no process of the run (the recorded process
tree: harness, engine core, worker, watchdog) is alive 10 s later."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from proctree import Recorder, wait_all_gone

pytestmark = pytest.mark.engine
KEY = ["task", "strategy", "model", "example_id"]
N = 24  # 2 strategies x 12 examples
HARNESS = [sys.executable, "-m", "harness.cli"]


def journal_lines(out: Path) -> int:
    j = out / "journal.jsonl"
    return sum(1 for line in j.read_bytes().splitlines() if line.strip()) if j.exists() else 0


def start(cmd, tmp_path, *, background_job: bool = False):
    """Start `cmd`; with background_job, as `cmd &` from a non-interactive shell script (which starts the
    job with SIGINT ignored). Returns (harness pid, Popen, log path, recorder of the harness's tree)."""
    log = tmp_path / f"log-{time.time_ns()}.txt"
    if background_job:
        line = " ".join(f"'{c}'" for c in cmd)
        proc = subprocess.Popen(["bash", "-c", f"{line} >'{log}' 2>&1 & echo $!; wait $!; exit $?"],
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        pid = int(proc.stdout.readline())
    else:
        proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        pid = proc.pid
    return pid, proc, log, Recorder(pid)


def wait_for_lines(proc, out: Path, at_least: int, timeout: float = 400) -> int:
    t0 = time.time()
    while time.time() - t0 < timeout:
        n = journal_lines(out)
        if n >= at_least:
            return n
        if proc.poll() is not None:
            pytest.fail(f"harness run exited early with {proc.returncode}")
        time.sleep(0.1)
    pytest.fail("the run wrote nothing to its journal in time")


def stop_and_check(pid, proc, rec, sig, log: Path, expect: int, group: bool = False) -> None:
    """Send `sig` to the harness only (or its whole process group), wait for it; it exits with `expect`
    (else the log's tail is the message) and every process of its tree is gone within 10 s."""
    (os.killpg if group else os.kill)(pid, sig)
    code = proc.wait(timeout=120)
    left = wait_all_gone(rec.stop(), timeout=10)
    assert not left, f"processes of the run alive 10 s after {sig.name}: {left}"
    assert code == expect, (code, log.read_text(errors="replace")[-4000:])


def test_signals_then_resume_gives_exactly_n_rows_under_one_model(tmp_path):
    out = tmp_path / "run"
    first = [*HARNESS, "run", "--task", "coin_flip", "--strategy", "zero_shot", "--strategy", "cot",
             "--limit", "12", "--chunk-size", "4", "--out", str(out), "--no-cache", "--quiet", "--no-report"]
    resume = [*HARNESS, "run", "--resume", str(out), "--quiet", "--no-report"]  # the spec keeps --no-cache

    # 1. a background job (SIGINT inherited ignored) still stops on SIGINT: journal kept, exit 130
    pid, proc, log, rec = start(first, tmp_path, background_job=True)
    wait_for_lines(proc, out, 4)
    stop_and_check(pid, proc, rec, signal.SIGINT, log, 130)
    text = log.read_text(errors="replace")
    assert f"harness run --resume {out}" in text
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["config"]["chunk_size"] == 4
    assert len(pd.read_parquet(out / "predictions.parquet")) == journal_lines(out) >= 4

    # 2. Ctrl-C at a terminal: SIGINT to the whole foreground process group. The engine core and worker run
    # in a session of their own (harness/backends/engine_log.py), so the harness alone is interrupted and
    # stops them cleanly: the hint and nothing else, no "RuntimeError: cancelled" traceback of a killed step.
    # (SIGTERM acts the same way: tests/test_procs.py, tests/test_signal_matrix.py.)
    pid, proc, log, rec = start(resume, tmp_path)
    wait_for_lines(proc, out, journal_lines(out) + 4)
    stop_and_check(pid, proc, rec, signal.SIGINT, log, 130, group=True)
    text = log.read_text(errors="replace")
    tail = text.rstrip().splitlines()[-3:]
    assert tail == ["interrupted (SIGINT): what was done is kept. Resume with:", f"  harness run --resume {out}",
                    str(out)], tail
    assert "Traceback" not in text and "RuntimeError" not in text, text[-3000:]
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"

    # 3. SIGKILL of the harness alone: the watchdog removes its engine core and worker
    pid, proc, log, rec = start(resume, tmp_path)
    wait_for_lines(proc, out, journal_lines(out) + 4)
    stop_and_check(pid, proc, rec, signal.SIGKILL, log, -signal.SIGKILL)
    at_kill = journal_lines(out)
    assert at_kill < N, "the run finished before it could be killed; use a larger limit"

    # 4. the printed command completes the run: exactly N rows, no duplicates, one model name, same chunks.
    # Without --quiet, as the README's first command runs: the harness's one progress bar, no engine bar, no
    # INFO line, none of the engine's warnings about the harness's own defaults (docs/engine.md); the table,
    # the verdict, and the run folder last.
    res = subprocess.run([c for c in resume if c != "--quiet"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == str(out)  # the last line is the run folder
    assert "coin_flip" in res.stdout and "zero_shot" in res.stdout  # the summary table
    assert lines[-2].startswith("On coin_flip (SmolLM2-135M-Instruct), "), lines  # the verdict, after the table
    assert re.search(r"units \d+/\d+ \|.*\| .* left, \d+ of \d+ requests, [\d.]+ req/s", res.stderr), res.stderr[-2000:]
    for engine_says in ("Processed prompts", "Rendering conversations", "Loading safetensors", " INFO ",
                        "chunked prefill", "Triton", "LD_PRELOAD", "oneDNN", "Enforce eager", "MEMBIND"):
        assert engine_says not in res.stderr, (engine_says, res.stderr[-3000:])
    assert "exited unexpectedly" not in res.stderr and "force killing" not in res.stderr, res.stderr[-2000:]
    preds = pd.read_parquet(out / "predictions.parquet")
    assert len(preds) == N and not preds.duplicated(KEY).any() and preds["unit_id"].is_unique
    assert preds["model"].unique().tolist() == ["SmolLM2-135M-Instruct"]
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and meta["config"]["chunk_size"] == 4 and len(meta["resumes"]) == 3
    assert meta["resumes"][-1]["already_done"] == at_kill and meta["resumes"][-1]["pending"] == N - at_kill
    assert meta["config"]["model"] == "SmolLM2-135M-Instruct" and meta["config"]["model_spec"] == "bundled"
    for name in ("predictions.parquet", "summary.csv", "run.json"):
        assert (out / name).exists()

    # 5. nothing pending: no engine starts, the rows stay as they are
    res = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["engine_started"] is False and meta["rows"] == N
    pd.testing.assert_frame_equal(pd.read_parquet(out / "predictions.parquet"), preds)
