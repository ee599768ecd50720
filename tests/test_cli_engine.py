"""The command line on the real engine: Ctrl-C, SIGKILL mid-run, and resume to exactly N rows."""
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

pytestmark = pytest.mark.engine
KEY = ["task", "strategy", "model", "example_id"]


def journal_lines(out: Path) -> int:
    j = out / "journal.jsonl"
    return sum(1 for line in j.read_bytes().splitlines() if line.strip()) if j.exists() else 0


def start(cmd, tmp_path):
    log = open(tmp_path / f"log-{time.time_ns()}.txt", "wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy())


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


def test_ctrl_c_then_sigkill_then_resume_gives_exactly_n_rows(tmp_path):
    out = tmp_path / "run"
    n_units = 2 * 12
    cmd = [sys.executable, "-m", "harness.cli", "run", "--task", "coin_flip", "--strategy", "zero_shot",
           "--strategy", "cot", "--limit", "12", "--chunk-size", "4", "--out", str(out), "--no-cache", "--quiet"]

    # 1. Ctrl-C: stops cleanly, keeps what is done, prints the resume command, exit 130
    proc = start(cmd, tmp_path)
    wait_for_lines(proc, out, 4)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    text = sorted(tmp_path.glob("log-*.txt"))[-1].read_text(errors="replace")
    assert f"harness run --resume {out}" in text
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "interrupted"
    kept = pd.read_parquet(out / "predictions.parquet")
    assert len(kept) == journal_lines(out) >= 4

    # 2. SIGKILL of the whole process group mid-run: nothing is flushed on the way out
    proc = start(cmd, tmp_path)
    done_before = journal_lines(out)
    wait_for_lines(proc, out, done_before + 4)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    at_kill = journal_lines(out)
    assert at_kill < n_units, "the run finished before it could be killed; use a larger limit"

    # 3. the same command again resumes and completes, with exactly N rows and no duplicate keys
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == str(out)  # the last line is the run folder
    assert "coin_flip" in res.stdout and "zero_shot" in res.stdout  # the summary table
    preds = pd.read_parquet(out / "predictions.parquet")
    assert len(preds) == n_units and not preds.duplicated(KEY).any()
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and len(meta["resumes"]) == 2
    assert meta["resumes"][-1]["already_done"] == at_kill
    assert meta["resumes"][-1]["pending"] == n_units - at_kill  # what was lost is at most the chunk in flight
    for name in ("predictions.parquet", "summary.csv", "run.json"):
        assert (out / name).exists()
