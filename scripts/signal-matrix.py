"""The signal matrix on the real engine: SIGINT / SIGTERM / SIGKILL x {harness run (offline), harness run
--backend openai against harness serve, harness serve, harness run --backend ray --replicas 2 --ray-address local}
x {during engine start, mid-run, during finalize}.

    python scripts/signal-matrix.py [--only offline,openai,serve,ray] [--signals INT,TERM,KILL]
                                    [--timings start,mid,finalize] [--limit 12] [--json FILE] [--table]

For each case it records the command's process tree while it runs (pid + start time, tests/proctree.py),
sends the signal to the harness process alone, and checks:
  - no process of the recorded tree is alive 10 s later;
  - run: the run folder is complete, or `harness run --resume DIR` (the same command again when the
    run was stopped before it wrote run.json) ends with exactly N rows, no duplicate, one model name;
  - serve: its port is free again (a new socket can bind it).
Timings. run: start = the engine core (or, for openai, the harness) is up but run.json is not written;
mid = 4+ units journaled of N; finalize = every unit journaled, the engine closing and the result files
and report being written. serve: start = the API server process exists, not yet healthy; mid = a
request in flight; finalize = 0.3 s after a first SIGINT began the stop.
Results are appended to --json (default results/signal-matrix.json) so the matrix can run in parts
(wrap each part in /work/bin/engine-slot on a shared machine); --table prints the Markdown table of
every result in that file. docs/faults.md holds the table of the last full run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from proctree import Recorder, tree, wait_all_gone  # noqa: E402

HARNESS = [sys.executable, "-m", "harness.cli"]
SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "KILL": signal.SIGKILL}
RUN_EXIT = {"INT": 130, "TERM": 143, "KILL": -9}  # harness run: 128 + the signal; killed outright: -9
KEY = ["task", "strategy", "model", "example_id"]


def _lines(out: Path) -> int:
    j = out / "journal.jsonl"
    return sum(1 for x in j.read_bytes().splitlines() if x.strip()) if j.exists() else 0


def _wait(cond, proc, timeout: float) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _check_rows(out: Path, n: int) -> tuple[bool, str]:
    import pandas as pd

    df = pd.read_parquet(out / "predictions.parquet")
    ok = len(df) == n and not df.duplicated(KEY).any() and df["model"].nunique() == 1
    return ok, f"{len(df)} rows, {int(df.duplicated(KEY).sum())} dup, models {sorted(df['model'].unique())}"


def run_case(kind: str, sig: str, timing: str, *, tmp: Path, limit: int, url: str | None = None) -> dict:
    """One cell of the matrix; returns a result dict (ok, and what was seen)."""
    t0 = time.monotonic()
    res = {"command": kind, "signal": sig, "timing": timing}
    if kind == "serve":
        res.update(_serve_case(sig, timing, tmp))
    else:
        res.update(_run_case(kind, sig, timing, tmp=tmp, limit=limit, url=url))
    res["seconds"] = round(time.monotonic() - t0, 1)
    return res


def _run_case(kind, sig, timing, *, tmp, limit, url) -> dict:
    out = tmp / f"{kind}-{sig}-{timing}"
    n = 2 * limit
    cmd = [*HARNESS, "run", "--task", "coin_flip", "--strategy", "zero_shot", "--strategy", "cot", "--limit",
           str(limit), "--chunk-size", "4", "--no-cache", "--quiet", "--out", str(out)]
    if kind == "openai":
        cmd += ["--backend", "openai", "--base-url", url]
    if kind == "ray":  # a local cluster of its own: its Ray processes and both replicas' engines are in the tree
        cmd += ["--backend", "ray", "--replicas", "2", "--ray-address", "local"]
    log = open(tmp / f"{out.name}.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rec = Recorder(proc.pid)
    if timing == "start":  # openai: no engine; the harness is up (watchdog started) before run.json
        # offline: harness, watchdog, multiprocessing's resource tracker and the engine core being started
        hit = _wait(lambda: len(tree(proc.pid)) >= (4 if kind in ("offline", "ray") else 2)
                    and not (out / "run.json").exists(), proc, 300)
    elif timing == "mid":
        hit = _wait(lambda: 4 <= _lines(out) < n, proc, 600)
    else:
        hit = _wait(lambda: _lines(out) >= n, proc, 900)
    code, left = _signal(proc, rec, sig, 120)
    meta = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else None
    state = meta["status"] if meta else "no run.json"
    if state == "complete" and meta.get("rows") == n:
        rows_ok, rows = _check_rows(out, n)
        how = "complete"
    else:
        again = [*HARNESS, "run", "--resume", str(out), "--no-cache", "--quiet", "--no-report"] if meta else cmd
        if kind == "openai" and meta:
            again += ["--backend", "openai", "--base-url", url]
        r = subprocess.run(again, capture_output=True, text=True, timeout=900)
        rows_ok, rows = _check_rows(out, n) if r.returncode == 0 else (False, f"resume exit {r.returncode}")
        how = "resumed" if meta else "re-run"
    # the signal's own exit code; 0 only when the run had already ended (a signal during finalize)
    exited = code == RUN_EXIT[sig] or (timing == "finalize" and code == 0 and how == "complete")
    return {"hit": hit, "exit": code, "alive_10s": left, "status": state, "after": how, "rows": rows,
            "ok": bool(hit and not left and rows_ok and exited)}


def _serve_case(sig, timing, tmp) -> dict:
    from harness.backends.serve import free_port

    port = free_port()
    log = open(tmp / f"serve-{sig}-{timing}.log", "wb")
    proc = subprocess.Popen([*HARNESS, "serve", "--port", str(port), "--kv-cache-gib", "1", "--timeout", "300"],
                            stdout=subprocess.PIPE, stderr=log, start_new_session=True, text=True)
    rec = Recorder(proc.pid)
    if timing == "start":
        hit = _wait(lambda: len(tree(proc.pid)) >= 3, proc, 120)  # harness, watchdog, API server
        time.sleep(2)  # the API server is importing vLLM / starting its engine
    else:
        url = proc.stdout.readline().strip()
        hit = url.startswith("http")
        if timing == "mid":
            body = json.dumps({"model": "SmolLM2-135M-Instruct", "max_tokens": 200,
                               "messages": [{"role": "user", "content": "Count from 1 to 100."}]}).encode()
            req = urllib.request.Request(f"{url}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
            threading.Thread(target=lambda: _swallow(lambda: urllib.request.urlopen(req, timeout=60).read()),
                             daemon=True).start()
            time.sleep(0.5)
        else:
            os.kill(proc.pid, signal.SIGINT)  # a first Ctrl-C begins the stop ...
            time.sleep(0.3)  # ... and the signal under test arrives while it runs
    code, left = _signal(proc, rec, sig, 60)
    free = _port_free(port)
    return {"hit": hit, "exit": code, "alive_10s": left, "status": "-", "after": "-",
            "rows": f"port {'free' if free else 'BUSY'}", "ok": bool(hit and not left and free and code != "hung")}


def _signal(proc, rec, sig: str, wait_s: float):
    """Send the signal to the harness alone; (exit code or 'hung', processes of its tree alive 10 s later)."""
    os.kill(proc.pid, SIGNALS[sig])
    try:
        code = proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        code = "hung"
    return code, wait_all_gone(rec.stop(), timeout=10)


def _swallow(fn) -> None:
    try:
        fn()
    except Exception:
        pass


def table(results: list[dict]) -> str:
    head = ("| command | signal | timing | exit | alive 10 s later | run folder | then | rows / port | ok |\n"
            "|---|---|---|---|---|---|---|---|---|")
    rows = [f"| {r['command']} | SIG{r['signal']} | {r['timing']} | {r['exit']} | "
            f"{len(r['alive_10s']) if r['alive_10s'] else 0} | {r['status']} | {r['after']} | {r['rows']} | "
            f"{'yes' if r['ok'] else 'NO' + ('' if r['hit'] else ' (timing missed)')} |" for r in results]
    return "\n".join([head, *rows])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="offline,openai,serve", help="add ray for the --backend ray row (the ray extra)")
    p.add_argument("--signals", default="INT,TERM,KILL")
    p.add_argument("--timings", default="start,mid,finalize")
    p.add_argument("--limit", type=int, default=12, help="examples per strategy (2 strategies)")
    p.add_argument("--json", default=str(ROOT / "results" / "signal-matrix.json"))
    p.add_argument("--table", action="store_true", help="print the table of the results in --json and stop")
    a = p.parse_args()
    store = Path(a.json)
    done = json.loads(store.read_text()) if store.exists() else []
    if a.table:
        print(table(done))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from harness.system.procs import guard
    guard()  # this script's own children (a shared server) end with it
    tmp = Path(tempfile.mkdtemp(prefix="signal-matrix-"))
    kinds = a.only.split(",")
    server = None
    try:
        if "openai" in kinds:
            from harness.backends.serve import serve
            server = serve(kv_cache_gib=1, timeout_s=300)
        for kind in kinds:
            for sig in a.signals.split(","):
                for timing in a.timings.split(","):
                    r = run_case(kind, sig, timing, tmp=tmp, limit=a.limit, url=server.url if server else None)
                    print(json.dumps(r), flush=True)
                    done.append(r)
                    store.parent.mkdir(parents=True, exist_ok=True)
                    store.write_text(json.dumps(done, indent=1))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(table([r for r in done if r["command"] in kinds]))
    return 0 if all(r["ok"] for r in done if r["command"] in kinds) else 1


if __name__ == "__main__":
    sys.exit(main())
