"""The warm engine's private protocol and files (the daemon: warm_daemon.py; the client: warm.py).

Files, in the runtime folder (`harness.system.paths.runtime_dir()`, mode 0700):
    engine.sock   the Unix socket (mode 0600): no TCP port, so nothing listens beyond this machine
    engine.token  32 random bytes in hex (mode 0600), new for every engine
    engine.json   the state: pid, its start time, model, engine settings, status (starting / ready)
    engine.log    the daemon's stdout and stderr

A connection: the client sends the token as its first frame (raw bytes, never unpickled); the daemon
compares it in constant time and checks the peer's uid (SO_PEERCRED) before it reads anything else.
Every later frame is a pickle of `(op, args)` one way and `("ok", value)` or `("error", text)` back.
Pickle carries the frozen records (Request, Completion) as they are; it is safe here only because both
ends are this user's processes: a frame is unpickled only after the token, which only this user can read,
and the socket itself is mode 0600 in a 0700 folder (docs/security.md). A frame is an 8-byte big-endian
length and the payload.
"""
from __future__ import annotations

import json
import os
import pickle
import secrets
import socket
import struct
from pathlib import Path
from typing import Any

from ..system.paths import runtime_dir
from ..system.procs import proc_stat

SOCKET, TOKEN, STATE, LOG = "engine.sock", "engine.token", "engine.json", "engine.log"
MAX_FRAME = 1 << 31
_LEN = struct.Struct(">Q")


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LEN.pack(len(payload)) + payload)


def recv_frame(sock: socket.socket) -> bytes | None:
    """One frame, or None at a clean end of the connection (ConnectionError when it ends mid-frame)."""
    head = _recv_exact(sock, _LEN.size, eof_ok=True)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if n > MAX_FRAME:
        raise ConnectionError(f"a frame of {n} bytes")
    return _recv_exact(sock, n, eof_ok=False)


def _recv_exact(sock: socket.socket, n: int, *, eof_ok: bool) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            if eof_ok and not buf:
                return None
            raise ConnectionError("the connection ended in the middle of a frame")
        buf += chunk
    return bytes(buf)


def send_obj(sock: socket.socket, obj: Any) -> None:
    send_frame(sock, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def recv_obj(sock: socket.socket) -> Any:
    frame = recv_frame(sock)
    if frame is None:
        raise ConnectionError("the warm engine closed the connection")
    return pickle.loads(frame)  # noqa: S301 - only after the token (see the module docstring)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[2]


# --------------------------------------------------------------------------- files

def paths(folder: Path | None = None) -> dict[str, Path]:
    folder = folder or runtime_dir()
    return {"dir": folder, "socket": folder / SOCKET, "token": folder / TOKEN, "state": folder / STATE,
            "log": folder / LOG}


def write_private(path: Path, text: str) -> None:
    """Write a file only this user can read (created 0600, then renamed into place)."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def new_token(path: Path) -> str:
    token = secrets.token_hex(32)
    write_private(path, token)
    return token


def read_state(folder: Path | None = None) -> dict | None:
    try:
        return json.loads(paths(folder)["state"].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_state(state: dict, folder: Path | None = None) -> None:
    write_private(paths(folder)["state"], json.dumps(state, indent=1, sort_keys=True, default=str))


def remove_files(folder: Path | None = None, *, keep_log: bool = True) -> None:
    p = paths(folder)
    for key in ("socket", "token", "state") + (() if keep_log else ("log",)):
        try:
            p[key].unlink()
        except FileNotFoundError:
            pass


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), None when it is gone or a zombie: with the pid it
    names one process, so a pid reused by another program is never taken for the engine."""
    st = proc_stat(pid)
    return None if st is None or st[0] in ("Z", "X") else st[2]


def alive(state: dict | None) -> bool:
    """The state's daemon is still the process it recorded."""
    return bool(state) and start_time(int(state["pid"])) == state.get("pid_start")


def comparable(settings: dict) -> str:
    """The engine settings that decide whether a run may use the warm engine: everything passed to
    `vllm.LLM(...)` (what run.json's `engine` records), without what the engine found at start."""
    keep = {k: v for k, v in settings.items() if k not in ("vllm_check", "ld_preload", "warm_engine")}
    return json.dumps(keep, sort_keys=True, default=str)
