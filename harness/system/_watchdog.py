"""The process watchdog (standard library only; started by `harness.system.procs.guard()`, never imported).

    python -I _watchdog.py TOKEN PARENT_PID

It records the parent's process tree every 0.25 s (pid + start time) and waits for the parent to end,
by any means (SIGKILL included): its stdin is a pipe whose only writer is the parent, so the read
returns end-of-file the moment the parent is gone; a change of its own parent pid is checked too.
Then it SIGKILLs every recorded descendant still alive (same pid and start time: vLLM forks its
engine core by default, and a forked child shows its parent's *initial* environment), and every
process of this user whose initial environment carries TOKEN in HARNESS_GUARD (a ':'-separated
list): every process exec'd below the guarded parent after guard() (the `harness serve` API server,
spawned engines, `harness run` subprocesses) inherits the variable, whoever its parent is now.
It scans again until two scans in a row find nobody (at most ~5 s), then exits.
"""
import os
import select
import signal
import sys
import time

VAR = b"HARNESS_GUARD="


def guarded(token: bytes) -> list[int]:
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:  # gone, or another user's
            continue
        for item in env.split(b"\0"):
            if item.startswith(VAR) and token in item[len(VAR):].split(b":"):
                found.append(int(name))
                break
    return found


def _stat(pid: int):
    """(ppid, start time) of a live (not zombie) process, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    return None if rest[0] in ("Z", "X") else (int(rest[1]), int(rest[19]))


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every process below `root` now."""
    kids: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st:
                kids.setdefault(st[0], []).append(int(name))
                starts[int(name)] = st[1]
    out, todo = {}, list(kids.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid not in out and pid != os.getpid():
            out[pid] = starts[pid]
            todo.extend(kids.get(pid, ()))
    return out


def main() -> int:
    token, parent = sys.argv[1].encode(), int(sys.argv[2])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)  # only the parent's end stops this process
    fd = sys.stdin.fileno()
    tree: dict[int, int] = {}  # forked children (vLLM's default) show the parent's initial environment
    while True:
        tree.update(descendants(parent))
        ready, _, _ = select.select([fd], [], [], 0.25)
        if ready and not os.read(fd, 4096):
            break  # end-of-file: the parent is gone
        if os.getppid() != parent:
            break
    deadline, empty = time.monotonic() + 5.0, 0
    while time.monotonic() < deadline and empty < 2:
        victims = guarded(token) + [p for p, start in tree.items() if (_stat(p) or (0, None))[1] == start]
        empty = 0 if victims else empty + 1
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
