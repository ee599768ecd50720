"""Start, stop and describe the warm engine (`harness engine start|status|stop`; the daemon: warm_daemon.py).

    start_engine(model=None, engine={"dtype": "float32"}, idle_s=900)  # returns the ready state
    engine_status()                                                  # the state, or None
    stop_engine()                                                    # returns the stopped state

Bad input is one ConfigError each (the CLI prints one line, exit 2): a second start while one runs, a stop
with none running, a stale state whose process is gone (its files are removed, and the error says so).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, EngineStartError
from ..system.paths import runtime_dir
from . import warm_wire as wire

START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 60.0


def _folder(folder: Path | None) -> Path:
    try:
        return folder or runtime_dir()
    except PermissionError as exc:
        raise ConfigError(str(exc), field="HARNESS_RUNTIME_DIR", fix="set HARNESS_RUNTIME_DIR to a folder of your own") from None


def engine_status(folder: Path | None = None) -> dict | None:
    """The running daemon's state (status `starting` or `ready`), or None; a stale state is removed."""
    folder = _folder(folder)
    state = wire.read_state(folder)
    if state is None:
        return None
    if not wire.alive(state):
        wire.remove_files(folder)
        return None
    return state


def start_engine(*, model: str | None = None, engine: dict[str, Any] | None = None, idle_s: float = 900,
                 folder: Path | None = None, timeout_s: float = START_TIMEOUT_S) -> dict:
    """Start the daemon in its own session (a terminal's Ctrl-C does not reach it) and wait until its engine
    is ready; its output goes to engine.log in the runtime folder."""
    folder = _folder(folder)
    state = wire.read_state(folder)
    if state is not None and wire.alive(state):
        raise ConfigError(f"a warm engine is already running (pid {state['pid']}, {state.get('model_name') or 'starting'})",
                          where=str(folder), fix="use it, or stop it first with `harness engine stop`")
    from .models import resolve_model

    resolve_model(model)  # a bad --model is one line here, not a daemon that dies
    stale = state is not None or wire.paths(folder)["socket"].exists()
    wire.remove_files(folder)
    if stale:
        print(f"removed the files of a warm engine that is no longer running ({folder})", file=sys.stderr)
    log = wire.paths(folder)["log"]
    cmd = [sys.executable, "-m", "harness.backends.warm_daemon", "--dir", str(folder), "--idle", str(idle_s),
           "--engine", json.dumps(engine or {})] + (["--model", model] if model else [])
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True,
                                close_fds=True)
    finally:
        os.close(fd)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = wire.read_state(folder)
        if state and state.get("pid") == proc.pid and state.get("status") == "ready":
            return state
        if proc.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise EngineStartError(f"the warm engine exited with {proc.returncode} while it started: {tail}",
                                   where=str(log), fix="read the engine log; check the model and engine options")
        time.sleep(0.2)
    proc.terminate()
    raise EngineStartError(f"the warm engine was not ready after {timeout_s:g} s", where=str(log),
                           fix="read the engine log")


def stop_engine(folder: Path | None = None, *, timeout_s: float = STOP_TIMEOUT_S) -> dict:
    """SIGTERM the daemon (it closes its engine), wait for it and for its engine processes to end; SIGKILL
    after `timeout_s` (its watchdog then removes the engine processes)."""
    folder = _folder(folder)
    state = wire.read_state(folder)
    if state is None:
        raise ConfigError("no warm engine is running", where=str(folder), fix="start one with `harness engine start`")
    if not wire.alive(state):
        wire.remove_files(folder)
        raise ConfigError(f"the warm engine recorded here (pid {state['pid']}) is not running; its stale socket "
                          "and state were removed", where=str(folder), fix="start one with `harness engine start`")
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone([(pid, state["pid_start"])], timeout_s):
        os.kill(pid, signal.SIGKILL)
        _wait_gone([(pid, state["pid_start"])], 10)
    engines = [(p, wire.start_time(p)) for p in state.get("engine_pids", [])]
    _wait_gone([(p, t) for p, t in engines if t is not None], 15)
    wire.remove_files(folder)
    return state


def _wait_gone(procs: list[tuple[int, int | None]], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(wire.start_time(p) != t for p, t in procs):
            return True
        time.sleep(0.1)
    return all(wire.start_time(p) != t for p, t in procs)
