"""The process guard and the signal handling (harness/system/procs.py) without an engine: plain child processes
stand in for vLLM's spawned engine core and worker (the real engine cases are in test_cli_engine.py and
test_signal_matrix.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from proctree import Recorder, alive, wait_all_gone

# A guarded parent that starts a child and a grandchild that is reparented to init at once (double fork),
# like an engine core whose parent died; then it waits to be killed.
PARENT = """
import subprocess, sys, time
from harness.system.procs import guard
guard()
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
subprocess.Popen(["bash", "-c", "sleep 300 & disown; exit 0"])
import multiprocessing
if __name__ == "__main__":  # a forked child, as vLLM starts its engine core by default (no token in its environ)
    multiprocessing.get_context("fork").Process(target=time.sleep, args=(300,)).start()
print("ready", flush=True)
time.sleep(300)
"""


def test_sigkill_of_a_guarded_process_takes_its_children_and_orphans_with_it():
    proc = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    rec = Recorder(proc.pid)
    time.sleep(0.5)
    seen = rec.stop()
    # the orphaned sleep is no longer in the tree: find it by the guard token it inherited
    token = open(f"/proc/{proc.pid}/environ", "rb").read()  # the parent's initial env has no token of its own
    orphans = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in seen:
            try:
                env = open(f"/proc/{name}/environ", "rb").read()
                cmd = open(f"/proc/{name}/cmdline", "rb").read()
            except OSError:
                continue
            if b"HARNESS_GUARD=" in env and env != token and cmd.startswith(b"sleep\x00300"):
                ppid = int(open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()[1])
                if ppid not in seen:
                    from proctree import tree
                    orphans.update(tree(int(name)))
    assert len(seen) >= 4, seen  # parent, watchdog, python child, forked child (the bash child may be gone)
    assert orphans, "the reparented grandchild was not found"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert wait_all_gone({**seen, **orphans}, timeout=10) == []


SIGNALLED = """
import sys, time
from harness.system.procs import handle_signals, exit_code, deferred
handle_signals()
mode = sys.argv[1]
try:
    if mode == "defer":        # a signal inside the block waits until the block is done
        with deferred():
            print("ready", flush=True)
            time.sleep(2)
            print("block-done", flush=True)
    print("ready", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    print("interrupted", exit_code(), flush=True)
    if mode == "slow":         # a stop that takes long: a second signal must end it at once
        time.sleep(60)
sys.exit(exit_code())
"""


def _signalled(*args, bash_background=False):
    cmd = [sys.executable, "-c", SIGNALLED, *args]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    if bash_background:  # `cmd &` from a script: SIGINT starts ignored
        line = " ".join(f"'{c}'" for c in cmd)
        wrapper = subprocess.Popen(["bash", "-c", f"{line} & echo $!; wait $!"], stdout=subprocess.PIPE, text=True,
                                   env=env)
        pid = int(wrapper.stdout.readline())
        return wrapper, pid
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    return proc, proc.pid


def test_sigterm_and_sighup_act_like_ctrl_c_with_their_exit_codes():
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)):
        proc, pid = _signalled("fast")
        assert proc.stdout.readline().strip() == "ready"
        os.kill(pid, sig)
        assert proc.stdout.readline().split() == ["interrupted", str(code)]
        assert proc.wait(timeout=20) == code


def test_a_background_job_with_sigint_ignored_still_stops_on_sigint():
    proc, pid = _signalled("fast", bash_background=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(pid, signal.SIGINT)
    assert proc.stdout.readline().split() == ["interrupted", "130"]
    assert proc.wait(timeout=20) == 130


def test_a_second_signal_exits_at_once():
    proc, pid = _signalled("slow")
    assert proc.stdout.readline().strip() == "ready"
    os.kill(pid, signal.SIGTERM)
    assert proc.stdout.readline().split() == ["interrupted", "143"]
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 143 and time.monotonic() - t0 < 5


def test_deferred_holds_a_signal_until_the_block_is_done():
    proc, pid = _signalled("defer")
    assert proc.stdout.readline().strip() == "ready"
    os.kill(pid, signal.SIGINT)
    assert proc.stdout.readline().strip() == "block-done"
    assert proc.stdout.readline().split() == ["interrupted", "130"]
    assert proc.wait(timeout=20) == 130


def test_alive_ignores_a_reused_pid():
    assert alive({os.getpid(): 0}) == []  # same pid, another start time: not the recorded process


# The engine core being started: a Ctrl-C reaches it too, and it prints as it stops.
ENGINE = """
import sys, time
try:
    time.sleep(300)
except KeyboardInterrupt:
    time.sleep(0.3)
    print("engine noise", file=sys.stderr, flush=True)
"""
# An engine start that swallows KeyboardInterrupt and goes on waiting, as vLLM's start-up code did when
# a signal landed in it (then waited for a ready message from an engine that never sent one).
STARTING = """
import subprocess, sys, time
from harness.system.procs import exit_on_signal, handle_signals
handle_signals()  # no guard(): the harness itself must stop the engine being started before it prints
with exit_on_signal("nothing was written", ""):
    subprocess.Popen([sys.executable, "-c", sys.argv[1]])  # the engine core being started
    print("ready", flush=True)
    for _ in range(600):
        try:
            time.sleep(0.1)
        except KeyboardInterrupt:
            pass
print("not interrupted", flush=True)
"""


def test_a_signal_during_an_engine_start_exits_at_once_and_takes_the_engine_with_it():
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)):
        proc = subprocess.Popen([sys.executable, "-c", STARTING, ENGINE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert proc.stdout.readline().strip() == "ready"
        rec = Recorder(proc.pid)
        time.sleep(0.5)
        os.killpg(proc.pid, sig)  # the whole group, as a terminal's Ctrl-C or systemd does
        assert proc.wait(timeout=10) == code
        # the message is the last thing printed: the engine being started was stopped before it
        assert proc.stderr.read().strip().splitlines()[-1] == \
            f"interrupted ({signal.Signals(sig).name}) while the engine started: nothing was written"
        assert proc.stdout.read() == ""
        assert wait_all_gone(rec.stop(), timeout=10) == []
