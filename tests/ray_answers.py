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
