"""The warm engine: a background process that holds one offline engine (`VLLMBackend`) and answers
runs over a private Unix socket (the protocol: warm_wire.py). Started by `harness engine start`:

    python -m harness.backends.warm_daemon --dir RUNTIME_DIR --idle 900 --engine '{"dtype": "float32"}' [--model M]

Every call goes through the backend's own methods (`generate`, `stats`, `reset_prefix_cache`,
`engine_settings`), so everything the offline backend does works unchanged: batching, guided output,
log-likelihood with prefix reuse, n = k sampling, the prefix-cache reset of the latency probe.

One connection (one run) at a time: a second run's connection waits in the socket's backlog until the
first ends (its client says so). After `idle_s` seconds with no connection (or no request on an open one)
the daemon stops. SIGTERM, SIGINT and SIGHUP stop it: the engine is closed, the socket, token and state
files removed. Its engine processes carry the watchdog's token (VLLMBackend.llm calls guard()), so a
SIGKILL of the daemon leaves none of them behind (docs/faults.md).
"""
from __future__ import annotations

import argparse
import hmac
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import HarnessError
from . import warm_wire as wire

DEFAULT_IDLE_S = 900
AUTH_TIMEOUT_S = 10.0


def listen(sock_path: Path) -> socket.socket:
    """The daemon's socket, mode 0600 from the start (umask while binding), never a TCP port."""
    try:
        sock_path.unlink()
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        srv.bind(str(sock_path))
    finally:
        os.umask(old)
    os.chmod(sock_path, 0o600)
    srv.listen(8)
    return srv


class EngineDead(Exception):
    """The engine behind the daemon died (vLLM's EngineDeadError): the daemon stops after telling the run."""


def serve(backend: Any, srv: socket.socket, token: str, *, idle_s: float, log=print) -> str:
    """Answer connections one at a time until `idle_s` seconds pass with no connection; returns why it
    stopped. A KeyboardInterrupt (a signal) propagates to the caller, which closes the engine."""
    srv.settimeout(idle_s)
    while True:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            return f"idle for {idle_s:g} s"
        with conn:
            try:
                handle(backend, conn, token, idle_s=idle_s, log=log)
            except (ConnectionError, OSError, EOFError) as exc:  # the client went away (SIGKILL of a run)
                log(f"connection ended: {type(exc).__name__}: {exc}")


def handle(backend: Any, conn: socket.socket, token: str, *, idle_s: float, log=print) -> None:
    """One client: the token first (raw, compared in constant time, same uid), then requests until it closes."""
    conn.settimeout(AUTH_TIMEOUT_S)
    if wire.peer_uid(conn) != os.getuid():
        log("refused a connection from another user")
        return
    first = wire.recv_frame(conn)
    if first is None or not hmac.compare_digest(first, token.encode()):
        log("refused a connection without the engine's token")
        return
    conn.settimeout(idle_s)
    wire.send_obj(conn, ("ok", info(backend)))
    started = time.monotonic()
    calls = 0
    while True:
        try:
            msg = wire.recv_obj(conn)
        except ConnectionError:
            break
        op, args = msg
        calls += 1
        reply = dispatch(backend, op, args)
        wire.send_obj(conn, reply)
        if reply[0] == "error" and "EngineDead" in reply[1]:
            raise EngineDead(reply[1])
    log(f"run finished: {calls} calls in {time.monotonic() - started:.1f} s")


def info(backend: Any) -> dict:
    return {"settings": backend.engine_settings(), "model_name": backend.model_name,
            "model_path": backend.model_path, "identity": backend.identity(), "pid": os.getpid()}


def dispatch(backend: Any, op: str, args: tuple) -> tuple[str, Any]:
    """('ok', value) or ('error', one line). A HarnessError keeps its one line; any other exception from
    the engine is an error of the engine (the client raises BackendError)."""
    try:
        if op == "generate":
            return "ok", backend.generate(args[0])
        if op == "stats":
            return "ok", backend.stats()
        if op == "reset_prefix_cache":
            return "ok", backend.reset_prefix_cache()
        if op == "info":
            return "ok", info(backend)
        return "error", f"unknown operation {op!r}"
    except HarnessError as exc:
        return "error", exc.one_line()
    except Exception as exc:  # the engine's failure, reported to the run as one line (it stops with a resume)
        return "error", f"{type(exc).__name__}: {exc}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_daemon(folder: Path, *, model: str | None, engine: dict, idle_s: float) -> int:
    """Start the engine, then serve; the state file says `starting`, then `ready`. Returns the exit code."""
    from ..system.procs import exit_on_signal, handle_signals, process_tree
    from .options import engine_call
    from .vllm import VLLMBackend

    handle_signals()  # SIGTERM / SIGHUP / SIGINT: KeyboardInterrupt, then the engine is closed below
    me = os.getpid()
    state = {"pid": me, "pid_start": wire.start_time(me), "status": "starting", "model_spec": model,
             "engine_options": engine, "idle_s": idle_s, "started_at": _now(), "dir": str(folder),
             "socket": str(wire.paths(folder)["socket"])}
    wire.write_state(state, folder)
    backend = None
    try:
        backend = VLLMBackend(model, **engine_call(engine))
        backend.quiet()
        with exit_on_signal("the warm engine was stopped while it started"):
            backend.start()
        token = wire.new_token(wire.paths(folder)["token"])
        srv = listen(wire.paths(folder)["socket"])
        state.update(status="ready", ready_at=_now(), model_name=backend.model_name, model_path=backend.model_path,
                     settings=backend.engine_settings(), engine_pids=sorted(process_tree()))
        wire.write_state(state, folder)
        print(f"ready: {backend.model_name}, pid {me}, socket {state['socket']}", flush=True)
        why = serve(backend, srv, token, idle_s=idle_s, log=lambda m: print(m, flush=True))
        print(f"stopping: {why}", flush=True)
    except KeyboardInterrupt:
        print("stopping: a signal", flush=True)
    except EngineDead as exc:
        print(f"stopping: the engine died ({exc})", flush=True)
    except HarnessError as exc:
        print(f"error: {exc.one_line()}", flush=True)
        wire.remove_files(folder)
        return 2
    finally:
        if (wire.read_state(folder) or {}).get("pid") == me:
            wire.remove_files(folder)
        if backend is not None:
            backend.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="harness-warm-engine")
    p.add_argument("--dir", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--engine", default="{}", help="the engine options as JSON (RunSpec.engine)")
    p.add_argument("--idle", type=float, default=DEFAULT_IDLE_S)
    a = p.parse_args(argv)
    return run_daemon(Path(a.dir), model=a.model, engine=json.loads(a.engine), idle_s=a.idle)


if __name__ == "__main__":
    sys.exit(main())
