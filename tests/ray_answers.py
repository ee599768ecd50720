"""Scripted replicas for the Ray backend's unit tests (imported by the Ray workers, so a module of its own).
`make(model, **options)` is what each replica builds instead of a vLLM engine. A replica's engine "dies" on a
request holding 13 when the file `once` (then removed: one death) or `always` is in $RAY_TEST_CRASH_DIR."""
from __future__ import annotations

import os
from pathlib import Path

from harness.backends.scripted import ScriptedBackend


def answer(request):
    text = request.prompt or request.messages[-1].content
    folder = Path(os.environ.get("RAY_TEST_CRASH_DIR", "/nonexistent"))
    if "13" in text:
        try:
            (folder / "once").unlink()  # the first replica to see it dies, once
            raise RuntimeError("engine died")
        except FileNotFoundError:
            pass
        if (folder / "always").exists():
            raise RuntimeError("engine died")
    return "The answer is " + text[-12:]


def make(model, **options):
    return ScriptedBackend(answer, model_name="scripted-ray")


def make_slow(model, **options):
    """A replica that takes 0.3 s a request (a run that is still going when the signal comes)."""
    import time

    def slow(request):
        time.sleep(0.3)
        return answer(request)

    return ScriptedBackend(slow, model_name="scripted-ray")


class _HangingEngine(ScriptedBackend):
    """A stand-in for the vLLM engine of vLLM 0.32 on its one failure that matters here: it has an engine
    process (`VLLM::FakeCore`), and once that process is killed, `generate` waits forever, as LLM.generate does."""

    def start(self):
        import subprocess

        from harness.system.procs import guard

        guard()  # as VLLMBackend does: the engine process ends with the replica
        self.core = subprocess.Popen(["bash", "-c", "exec -a VLLM::FakeCore sleep 100000"])

    def generate(self, requests):
        import time

        for _ in requests:
            time.sleep(0.1)
            while self.core.poll() is not None:  # the engine core is gone: wait forever
                time.sleep(1)
        return super().generate(requests)


def make_hanging(model, **options):
    return _HangingEngine(answer, model_name="scripted-ray")
