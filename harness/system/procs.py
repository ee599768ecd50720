"""Processes and signals: no engine outlives the harness, and SIGTERM / SIGHUP act like Ctrl-C.

`guard()` (idempotent) starts a watchdog process (`_watchdog.py`, in its own session so that a signal
to the harness's process group does not reach it) and adds a fresh token to HARNESS_GUARD in this
process's environment. Every process started afterwards inherits the variable: vLLM's engine core and
its workers (spawned), `harness serve`'s API server, `harness run` subprocesses of the tests. When this
process ends, by any means including SIGKILL, the watchdog sees the end of its stdin pipe and SIGKILLs
every process carrying the token within about a second. This works with spawn and fork alike, needs no
process group the harness would have to own, and catches grandchildren that were reparented to init.
Nested guards (a test session that runs `harness run`) append tokens, so each watchdog kills only what
was started below its own process. See docs/faults.md.

`handle_signals()` makes SIGTERM and SIGHUP raise KeyboardInterrupt like SIGINT (and re-arms SIGINT
when the shell started a background job with it ignored); a second signal exits at once with
128 + signum (the watchdog then removes the engine), and so does a first one during `exit_on_signal()`
(the engine start, which a KeyboardInterrupt leaves in pieces). `deferred()` holds the first signal back until
a block (writing the result files) is done. `exit_code()` is 128 + the signal received (130 for SIGINT
or a KeyboardInterrupt raised otherwise, 143 for SIGTERM, 129 for SIGHUP).
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

GUARD_VAR = "HARNESS_GUARD"
_STATE: dict = {"watchdog": None, "signum": None, "deferred": 0, "pending": None, "installed": False,
                "exit_note": None}


def guard() -> str:
    """Start this process's watchdog once; return its token."""
    wd = _STATE["watchdog"]
    if wd is not None and wd[0].poll() is None and wd[2] == os.getpid():
        return wd[1]
    token = secrets.token_hex(8)
    env = {k: v for k, v in os.environ.items() if k != GUARD_VAR}  # the watchdog is not its own victim
    proc = subprocess.Popen([sys.executable, "-I", str(Path(__file__).with_name("_watchdog.py")), token,
                             str(os.getpid())], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=env, close_fds=True)
    _STATE["watchdog"] = (proc, token, os.getpid())  # proc.stdin stays open for this process's life
    old = os.environ.get(GUARD_VAR)
    os.environ[GUARD_VAR] = f"{old}:{token}" if old else token
    return token


def _on_signal(signum, frame):
    if _STATE["signum"] is not None:  # the second signal: out now (the watchdog removes the engine)
        os._exit(128 + _STATE["signum"])
    _STATE["signum"] = signum
    if _STATE["exit_note"] is not None:  # inside an engine start: out now, never inside vLLM's start-up code
        _exit_now(signum, *_STATE["exit_note"])
    if _STATE["deferred"]:
        _STATE["pending"] = signum
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


def proc_stat(pid: int | str) -> tuple[str, int, int] | None:
    """(state, ppid, start time in clock ticks after boot) of a process from /proc, None when it is gone.
    With the pid, the start time names one process: a pid reused by another program differs in it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
        rest = text[text.rindex(")") + 2:].split()
        return rest[0], int(rest[1]), int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    """A process's command line from /proc (arguments joined by spaces), "" when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def process_tree(root: int | None = None) -> dict[int, int]:
    """{pid: start time} of every live (not zombie) process below `root` (default: this process), read
    from /proc; empty where there is no /proc. (The watchdog keeps its own copy: it imports nothing.)"""
    kids: dict[int, list[tuple[int, int]]] = {}
    try:
        names = [n for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return {}
    for name in names:
        st = proc_stat(name)
        if st is not None and st[0] != "Z":  # a zombie is dead (nobody reaped it yet)
            kids.setdefault(st[1], []).append((int(name), st[2]))
    out: dict[int, int] = {}
    todo = [os.getpid() if root is None else root]
    while todo:
        for pid, start in kids.get(todo.pop(), ()):
            if pid not in out:
                out[pid] = start
                todo.append(pid)
    return out


def _descendants() -> list[int]:
    """Every process below this one now, the watchdog excepted."""
    wd = _STATE["watchdog"]
    return [pid for pid in process_tree() if wd is None or pid != wd[0].pid]


def _exit_now(signum: int, err: str, out: str) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the signal may have landed inside a write to this very stream
            pass
    # The engine processes being started go first (a Ctrl-C reaches them too, and their tracebacks would
    # bury the message below); the watchdog would remove them a moment after this process ends anyway.
    victims = _descendants()
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for pid in victims:  # reap our own children; the grandchildren are init's
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
    try:  # sys.stderr, not fd 2: while the engine starts, fd 2 is the engine's filtered pipe (engine_log.py)
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        err_fd = 2
    os.write(err_fd, f"\ninterrupted ({signal.Signals(signum).name}) while the engine started: {err}\n".encode())
    if out:
        os.write(1, f"{out}\n".encode())
    os._exit(128 + signum)


@contextmanager
def exit_on_signal(err: str, out: str = ""):
    """While the block runs (an engine start, before the run folder is touched), a first SIGINT / SIGTERM /
    SIGHUP prints `err` on stderr (and `out` on stdout) and ends the process at once with 128 + signum;
    the watchdog then removes the engine processes being started. A KeyboardInterrupt raised inside
    vLLM's start-up code is not safe: depending on the moment, vLLM swallowed it and the harness hung
    waiting for an engine that would never report ready, or turned it into a RuntimeError (exit 2), or
    a spawned engine core died reading half its start data (found by the signal matrix). Only where
    handle_signals() is installed (the CLI); from Python, Ctrl-C raises KeyboardInterrupt as before."""
    old = _STATE["exit_note"]
    _STATE["exit_note"] = (err, out)
    try:
        yield
    finally:
        _STATE["exit_note"] = old


def start_note(run_dir: Path, *, resume: bool) -> tuple[str, str]:
    """What `exit_on_signal` prints when a run is stopped while its engine starts: (stderr, stdout)."""
    if resume:  # the folder is as it was: the printed command resumes it
        return f"the run folder is as it was. Resume with:\n  harness run --resume {run_dir}", str(run_dir)
    import shlex

    return f"nothing was written. Run the same command again:\n  harness {shlex.join(sys.argv[1:])}", ""


def handle_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt once; a second one exits at once."""
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _on_signal)
        _STATE["installed"] = True
    except ValueError:  # not the main thread
        pass


def interrupted_by_signal(exc: BaseException | None) -> bool:
    """True when `exc` is a KeyboardInterrupt or was raised while one was being handled (one is in its
    chain). A KeyboardInterrupt that lands inside library code can come out as another error: in CPython
    3.11's threading.Condition.wait (under queue.Queue.get, where vLLM's offline client waits for the
    engine's outputs) it can interrupt the lock's re-acquire, and the `with` block's release then raises
    RuntimeError('release unlocked lock') with the KeyboardInterrupt as its context. Such an error is the
    signal's doing: the run stops as it does for the signal."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def exit_code() -> int:
    return 128 + (_STATE["signum"] or signal.SIGINT)


def signal_name() -> str:
    return signal.Signals(_STATE["signum"] or signal.SIGINT).name


@contextmanager
def deferred():
    """Hold a first signal back until the block ends (then raise KeyboardInterrupt)."""
    _STATE["deferred"] += 1
    try:
        yield
    finally:
        _STATE["deferred"] -= 1
        if not _STATE["deferred"] and _STATE["pending"] is not None:
            _STATE["pending"] = None
            raise KeyboardInterrupt(signal_name())


def check_main_guard() -> None:
    """Refuse, in one line on stderr and exit code 2, to start the engine from a script without an
    `if __name__ == "__main__":` block: vLLM starts its engine processes with spawn, which re-imports the
    script, runs its top-level code again in the child, and fails there with a garbled error."""
    import ast
    import multiprocessing

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not str(path).endswith(".py") or multiprocessing.parent_process() is not None:
        return  # an interactive session, `python -c`, or already a child
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return
    for node in tree.body:
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test):
            return
    from ..errors import ConfigError

    err = ConfigError("this script starts the vLLM engine at import time, and the engine's processes start by "
                      "re-importing the script", where=str(path), field="__main__",
                      fix='put the code that runs under `if __name__ == "__main__":` (see README)')
    print(f"error: {err.one_line()}", file=sys.stderr, flush=True)  # one line, not a traceback
    raise SystemExit(2)
