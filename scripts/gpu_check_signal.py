"""The signal step of scripts/gpu-check.sh: SIGTERM to `harness run` and to `harness serve` on the bundled model.

    python scripts/gpu_check_signal.py WORKDIR      # one line per check; exit 1 if any fails

run:   SIGTERM to the `harness run` process (not its group) once its journal has rows. It must exit within
       60 s, leave no process of its group behind (an orphaned engine core holds the GPU), keep the rows it
       journaled, and the same command again must complete the run with exactly N rows.
serve: SIGTERM to `harness serve` after it answered one request. It must exit 0 within 60 s and leave no
       process of the server's group behind.
Survivors are SIGKILLed after the check so that the next step has the GPU. Runs on CPU too (slowly).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PY = sys.executable
GRACE_S = 60
RERUN_S = 300


def survivors(pgid: int) -> list[str]:
    """Processes still alive in process group `pgid` (ps lines), after SIGKILLing them."""
    ps = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(pgid)], capture_output=True, text=True)
    alive = [line.strip()[:120] for line in ps.stdout.splitlines() if line.strip()]
    if alive:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return alive


def sigterm(proc: subprocess.Popen, *groups: int | None) -> tuple[int | None, float, list[str]]:
    """SIGTERM to `proc`; (exit code or None after GRACE_S, seconds taken, survivors of its group and `groups`)."""
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
        code = proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - t0
    time.sleep(2)  # let children notice that their parent is gone
    return code, took, [line for g in (proc.pid, *groups) if g for line in survivors(g)]


def left_behind(left: list[str]) -> str:
    return f"{len(left)} process(es) left behind" + (f" {left[:3]!r}" if left else "")


def journal_lines(out: Path) -> int:
    j = out / "journal.jsonl"
    return sum(1 for line in j.read_bytes().splitlines() if line.strip()) if j.exists() else 0


def check_run(work: Path) -> tuple[bool, str]:
    out, n = work / "run", 24
    cmd = [PY, "-m", "harness.cli", "run", "--task", "coin_flip", "--strategy", "zero_shot", "--limit", str(n),
           "--chunk-size", "4", "--out", str(out), "--no-cache", "--quiet", "--no-report"]
    with open(work / "run-sigterm.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while journal_lines(out) < 4:
            if proc.poll() is not None or time.monotonic() > deadline:
                left = survivors(proc.pid)
                return False, f"run: no journal rows before exit/timeout (exit {proc.poll()}, {len(left)} left)"
            time.sleep(0.1)
        code, took, left = sigterm(proc)
    kept = journal_lines(out)
    with open(work / "run-rerun.log", "wb") as log:  # the same command again completes the run
        again = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rerun = again.wait(timeout=RERUN_S)
        except subprocess.TimeoutExpired:
            rerun = f"over {RERUN_S} s"
        survivors(again.pid)
    rows = None
    if rerun == 0:
        import pandas as pd
        rows = len(pd.read_parquet(out / "predictions.parquet"))
    ok = code is not None and not left and kept >= 4 and rows == n
    detail = (f"run: SIGTERM -> exit {code} in {took:.1f} s, {left_behind(left)}, {kept} journal rows kept, "
              f"rerun -> {f'{rows} rows of {n}' if rows is not None else f'FAILED (exit {rerun})'}")
    return ok, detail


def check_serve(work: Path) -> tuple[bool, str]:
    err_path = work / "serve-sigterm.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([PY, "-m", "harness.cli", "serve", "--port", "0", "--timeout", "300"],
                                stdout=subprocess.PIPE, stderr=err, start_new_session=True, text=True)
        url = proc.stdout.readline().strip()  # the URL, once /health answered
        if not url.startswith("http"):
            proc.wait(timeout=30)
            return False, f"serve: no URL (exit {proc.returncode}); see {err_path}"
        m = re.search(r"\(pid (\d+)", err_path.read_text(errors="replace"))
        server_pid = int(m.group(1)) if m else None
        body = json.dumps({"model": json.load(urllib.request.urlopen(f"{url}/models", timeout=30))["data"][0]["id"],
                           "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}).encode()
        req = urllib.request.Request(f"{url}/chat/completions", data=body, headers={"Content-Type": "application/json"})
        answered = bool(json.load(urllib.request.urlopen(req, timeout=60))["choices"][0]["message"]["content"])
        code, took, left = sigterm(proc, server_pid)
    ok = answered and code == 0 and not left and server_pid is not None
    return ok, (f"serve: answered={answered}, SIGTERM -> exit {code} in {took:.1f} s, server pid {server_pid}, "
                f"{left_behind(left)}")


def main(argv: list[str]) -> int:
    work = Path(argv[0] if argv else "gpu-check-signal")
    work.mkdir(parents=True, exist_ok=True)
    failed = 0
    for check in (check_run, check_serve):
        try:
            ok, detail = check(work)
        except Exception as exc:  # report, do not hide: one line per check
            ok, detail = False, f"{check.__name__}: {type(exc).__name__}: {exc}"
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {detail}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
