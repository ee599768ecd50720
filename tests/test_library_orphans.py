"""A library caller that builds VLLMBackend itself (no CLI, no runner) and is ended by SIGTERM leaves no
engine process behind. Before the fix, a script killed this way left its VLLM::EngineCore running under init."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

SCRIPT = """
import sys
def main():
    from harness.backends.vllm import VLLMBackend
    b = VLLMBackend(use_tqdm=False)
    b.start()
    print("ready", flush=True)
    sys.stdin.read()
if __name__ == "__main__":
    main()
"""


def _engine_pids() -> set[int]:
    pids = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f.read().startswith(b"VLLM::"):
                        pids.add(int(d))
            except OSError:
                pass
    return pids


def test_sigterm_to_a_library_script_leaves_no_engine(tmp_path):
    before = _engine_pids()
    script = tmp_path / "lib_caller.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=os.getcwd())
    try:
        assert proc.stdout.readline().strip() == "ready"
        started = _engine_pids() - before
        assert started, "the engine processes were not found"
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (_engine_pids() & started):
            time.sleep(0.5)
        assert not (_engine_pids() & started), "engine processes outlived the library caller"
    finally:
        proc.kill()
