"""The client of the warm engine (warm_daemon.py): a backend that sends its batches to the engine that
`harness engine start` keeps loaded, so a run skips the 20-50 s of import, model load and engine start.

    harness engine start --dtype float32        # once; the engine stays loaded (15 min idle by default)
    harness run --task coin_flip --dtype float32 --limit 20     # "using the warm engine (pid 4242)"

`attach(backend)` is what `harness run` calls with the offline backend it would have started: when a warm
engine is ready whose model and engine settings (everything passed to `vllm.LLM`) are the same, it returns
a `WarmBackend` for it; otherwise the backend itself, which starts its own engine as before. It never
uses a mismatched engine. `HARNESS_WARM=0` turns the look-up off.

`WarmBackend` implements the backend contract by forwarding each call (`generate`, `stats`,
`reset_prefix_cache`) to the daemon's `VLLMBackend`; its `engine_settings()` are the warm engine's, plus
`warm_engine` (pid, socket, since when), which run.json records. A warm engine that dies mid-run is a
BackendError: the runner stops the run with its resume command (harness/runs/runner.py).
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, Sequence

from ..errors import BackendError
from ..records import Completion, Request
from . import warm_wire as wire
from .base import BackendBase

BUSY_NOTICE_S = 1.0  # a run whose hello takes longer says that it waits for another run


class WarmBackend(BackendBase):
    """A connection to the warm engine described by `state` (the daemon's engine.json)."""

    name = "vllm"  # the same engine as the offline backend: rows, the cache identity and resume are unchanged
    spawns_processes = False  # the daemon spawned the engine; this process spawns nothing
    supports_prefix_cache_reset = True

    def __init__(self, state: dict, *, folder: Path | None = None) -> None:
        self.state = state
        self.folder = folder or Path(state["dir"])
        self.model_name = state["model_name"]
        self.model_path = state["model_path"]
        self._sock: socket.socket | None = None
        self.remote: dict | None = None  # what the daemon says about its engine when a run connects

    # ---- lifecycle
    def start(self) -> None:
        """Connect and present the token; wait (saying so once) while another run holds the engine."""
        if self._sock is not None:
            return
        p = wire.paths(self.folder)
        try:
            token = p["token"].read_text(encoding="utf-8").strip()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(p["socket"]))
            wire.send_frame(sock, token.encode())
            sock.settimeout(BUSY_NOTICE_S)
            try:
                hello = wire.recv_obj(sock)
            except socket.timeout:
                print(f"the warm engine (pid {self.state['pid']}) is busy with another run: waiting for it "
                      "(Ctrl-C stops this run)", file=sys.stderr, flush=True)
                sock.settimeout(None)
                hello = wire.recv_obj(sock)
        except (OSError, ConnectionError, EOFError) as exc:
            raise self._gone(exc) from None
        sock.settimeout(None)
        if hello[0] != "ok":
            raise BackendError(f"the warm engine refused the connection: {hello[1]}", where=str(p["socket"]))
        self.remote = hello[1]
        self._sock = sock

    def close(self) -> None:
        """End this run's connection; the engine stays loaded for the next run."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _call(self, op: str, *args: Any) -> Any:
        self.start()
        assert self._sock is not None
        try:
            wire.send_obj(self._sock, (op, args))
            status, value = wire.recv_obj(self._sock)
        except (OSError, ConnectionError, EOFError) as exc:
            self.close()
            raise self._gone(exc) from None
        if status != "ok":
            raise BackendError(f"the warm engine failed: {value}", where=f"warm engine pid {self.state['pid']}")
        return value

    def _gone(self, exc: BaseException) -> BackendError:
        return BackendError(f"the warm engine (pid {self.state['pid']}) is gone: {type(exc).__name__}: {exc}",
                            where=str(wire.paths(self.folder)["socket"]),
                            fix="start it again with `harness engine start`, or resume without it")

    # ---- the contract
    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return self._call("generate", list(requests))

    def stats(self) -> dict[str, float]:
        """The engine's counters ({} when not connected, or when the engine is gone: a nicety, as in VLLMBackend)."""
        if self._sock is None:
            return {}
        try:
            return self._call("stats")
        except BackendError:
            return {}

    def reset_prefix_cache(self) -> bool:
        return bool(self._call("reset_prefix_cache"))

    def engine_settings(self) -> dict[str, Any]:
        settings = dict((self.remote or self.state)["settings"])
        settings["warm_engine"] = {"pid": self.state["pid"], "socket": str(wire.paths(self.folder)["socket"]),
                                   "started_at": self.state.get("started_at"), "ready_at": self.state.get("ready_at")}
        return settings


def ready_engine(folder: Path | None = None) -> dict | None:
    """The state of a warm engine that is running and ready, else None (a stale state is left alone)."""
    try:
        state = wire.read_state(folder)
    except PermissionError:
        return None
    if not state or state.get("status") != "ready" or not wire.alive(state):
        return None
    return state


def mismatch(state: dict, backend: Any) -> str | None:
    """Why `backend` (the offline backend a run would start) may not use the warm engine, or None."""
    if state.get("model_path") != backend.model_path or state.get("model_name") != backend.model_name:
        return f"its model is {state.get('model_name')} ({state.get('model_path')}), this run's {backend.model_name}"
    theirs, mine = state.get("settings") or {}, backend.engine_settings()
    if wire.comparable(theirs) != wire.comparable(mine):
        diff = sorted(k for k in set(theirs) | set(mine) if k not in ("vllm_check", "ld_preload", "warm_engine")
                      and theirs.get(k) != mine.get(k))
        return "its engine options differ: " + ", ".join(f"{k} {theirs.get(k)!r} vs {mine.get(k)!r}" for k in diff)
    return None


def attach(backend: Any, *, announce: bool = True) -> Any:
    """A WarmBackend when a ready warm engine matches `backend` exactly (one line on stderr says so), else
    `backend`; a warm engine that does not match is named in one line and not used. HARNESS_WARM=0: never;
    HARNESS_WARM=require: a missing or mismatched warm engine is a ConfigError instead (exit 2)."""
    mode = os.environ.get("HARNESS_WARM", "1")
    if mode == "0" or getattr(backend, "name", None) != "vllm":
        return backend
    state = ready_engine()
    why = "none is running" if state is None else mismatch(state, backend)
    if why is not None and mode == "require":
        from ..errors import ConfigError
        raise ConfigError(f"HARNESS_WARM=require, but the warm engine cannot serve this run: {why}",
                          field="HARNESS_WARM", fix="start a matching one (`harness engine stop`, then `harness engine "
                          "start` with this run's --model and engine options), or unset HARNESS_WARM")
    if state is None:
        return backend
    if why is not None:
        if announce:
            print(f"not using the warm engine (pid {state['pid']}): {why}; starting an engine of its own",
                  file=sys.stderr, flush=True)
        return backend
    if announce:
        print(f"using the warm engine (pid {state['pid']}, {state['model_name']}, started {state.get('ready_at')})",
              file=sys.stderr, flush=True)
    return WarmBackend(state)
