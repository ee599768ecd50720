"""The process guard and the signal handling (harness/system/procs.py) without an engine: plain child processes
stand in for vLLM's spawned engine core and worker (the real engine cases are in test_cli_engine.py and
test_signal_matrix.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

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


# A SIGINT whose KeyboardInterrupt CPython turns into another error. vLLM's offline client waits for the
# engine's outputs in queue.Queue.get(); when the signal lands while that wait re-acquires the queue's lock
# (its output thread holding it a moment), threading.Condition.wait gives up the acquire and the `with`
# block's release raises RuntimeError('release unlocked lock'), the KeyboardInterrupt as its context, and
# `harness run` exited 1 with a traceback instead of 130 with the resume hint (as CI's run of
# tests/test_cli_engine.py once did, its log not kept). Here the same lock race is made certain: the putter
# holds the lock while the signal reaches the waiting main thread, and the handler is slowed so that the
# putter lets go first.
LOCK_RACE = """
import json, queue, signal, sys, threading, time
from pathlib import Path
import harness
from harness.backends.scripted import ScriptedBackend
from harness.system.procs import exit_code, handle_signals

handle_signals()
harness_handler = signal.getsignal(signal.SIGINT)
def slowed(signum, frame):
    time.sleep(0.3)
    harness_handler(signum, frame)
signal.signal(signal.SIGINT, slowed)

def wait_like_vllm():
    q, main = queue.Queue(), threading.get_ident()
    def putter():
        while True:
            with q.mutex:
                if q.not_empty._waiters:  # the main thread waits in q.get()
                    q.queue.append("outputs")
                    q.not_empty.notify()
                    time.sleep(0.1)  # it wakes and blocks on the lock held here
                    signal.pthread_kill(main, signal.SIGINT)
                    time.sleep(0.1)
                    return
            time.sleep(0.01)
    threading.Thread(target=putter, daemon=True).start()
    q.get()

class Backend(ScriptedBackend):
    def generate(self, requests):
        if len(self.calls) == 1:  # the second chunk
            wait_like_vllm()
        return super().generate(requests)

out = Path(sys.argv[1])
try:
    harness.run(["coin_flip"], ["zero_shot"], backend=Backend(lambda r: "heads"), limit=8, chunk_size=4,
                out=out, progress=False, cache=False, write_report=False)
    print("completed")
except KeyboardInterrupt as exc:
    print("interrupted", exit_code(), type(exc).__name__)
"""


def test_a_signal_that_library_code_turns_into_another_error_still_stops_the_run_as_a_signal(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-c", LOCK_RACE, str(out)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert res.returncode == 0 and res.stdout.split() == ["interrupted", "130", "RunInterrupted"], res.stderr[-3000:]
    assert "release unlocked lock" not in res.stderr, res.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "interrupted"
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert len(journal) == 4  # the first chunk is kept; the interrupted one is not journaled


def test_interrupted_by_signal_reads_the_exception_chain():
    from harness.system.procs import interrupted_by_signal

    def raised(fn):
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - the test looks at what came out
            return exc

    def converted():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("release unlocked lock")

    def converted_quietly():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("cancelled") from None  # the context is kept, only not shown

    def plain():
        raise RuntimeError("a bug")

    assert interrupted_by_signal(raised(converted)) and interrupted_by_signal(raised(converted_quietly))
    assert interrupted_by_signal(KeyboardInterrupt())
    assert not interrupted_by_signal(raised(plain)) and not interrupted_by_signal(None)


def test_the_cli_exits_with_the_signal_code_when_a_converted_interrupt_reaches_it(monkeypatch, capsys):
    from harness import cli

    def converted(a):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("release unlocked lock")

    def bug(a):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "tasks", converted)
    assert cli.main(["tasks"]) == 130 and "interrupted (SIGINT)" in capsys.readouterr().err
    monkeypatch.setitem(cli.COMMANDS, "tasks", bug)
    with pytest.raises(RuntimeError, match="a bug"):  # any other error is still a traceback: a bug shows
        cli.main(["tasks"])
