"""Record a process tree while it runs, and say which of its processes are still alive later.

By pid and start time (from /proc), never by name: a recorded pid that now belongs to another process
does not count, and a zombie (a dead process nobody has reaped yet; this container's init does not reap)
is not alive. Used by tests/test_cli_engine.py and scripts/signal-matrix.py.
"""
from __future__ import annotations

import os
import threading
import time


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, start time) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[1]), rest[0], int(rest[19])


def tree(root: int) -> dict[int, int]:
    """{pid: start time} of `root` and all its descendants now."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st:
                children.setdefault(st[0], []).append(int(name))
                starts[int(name)] = st[2]
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts and pid not in out:
            out[pid] = starts[pid]
            todo.extend(children.get(pid, ()))
    return out


def alive(recorded: dict[int, int]) -> list[int]:
    """The recorded processes that still run (same pid and start time, not a zombie)."""
    out = []
    for pid, start in recorded.items():
        st = _stat(pid)
        if st and st[2] == start and st[1] not in ("Z", "X"):
            out.append(pid)
    return sorted(out)


class Recorder:
    """Polls the tree under `root` every `every` seconds until stop(); `seen` holds every process met."""

    def __init__(self, root: int, every: float = 0.2) -> None:
        self.root, self.every = root, every
        self.seen: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.seen.update(tree(self.root))
            self._stop.wait(self.every)

    def stop(self) -> dict[int, int]:
        self._stop.set()
        self._thread.join()
        return dict(self.seen)


def wait_all_gone(recorded: dict[int, int], timeout: float = 10.0) -> list[int]:
    """Wait up to `timeout` s for every recorded process to end; return those still alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = alive(recorded)
        if not left:
            return []
        time.sleep(0.2)
    return alive(recorded)
