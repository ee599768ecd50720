"""The process watchdog (standard library only; started by `harness.procs.guard()`, never imported).

    python -I _watchdog.py TOKEN PARENT_PID

It waits for its parent to end, by any means (SIGKILL included): its stdin is a pipe whose only
writer is the parent, so the read returns end-of-file the moment the parent is gone; a change of
its own parent pid is checked every second as well. Then it SIGKILLs every process of this user
whose *initial* environment carries TOKEN in HARNESS_GUARD (a ':'-separated list): every process the
guarded parent started after guard() (vLLM's engine core and workers, spawned or forked, the
`harness serve` API server, `harness run` subprocesses) inherits the variable, whoever its parent is
now. It scans again until two scans in a row find nobody (at most ~5 s), then exits.
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


def main() -> int:
    token, parent = sys.argv[1].encode(), int(sys.argv[2])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)  # only the parent's end stops this process
    fd = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready and not os.read(fd, 4096):
            break  # end-of-file: the parent is gone
        if os.getppid() != parent:
            break
    deadline, empty = time.monotonic() + 5.0, 0
    while time.monotonic() < deadline and empty < 2:
        victims = guarded(token)
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
