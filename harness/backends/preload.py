"""Libraries preloaded into the CPU engine's processes (issue 13; chosen by `python -m bench.defaults`,
evidence in docs/engine.md "Engine defaults").

vLLM's CPU worker warns when libtcmalloc and Intel OpenMP are not in LD_PRELOAD. Measured here (2 cores,
best of 2, block size 32): tcmalloc makes 25-shot log-likelihood 19 % and 5-shot generation 9 % faster;
Intel OpenMP changes nothing measurable (0.96-1.10 of without), so only tcmalloc is preloaded and
vLLM keeps preloading PyTorch's own libgomp, as it does by default.

LD_PRELOAD acts when a process starts. vLLM starts its engine core and worker with spawn (new processes
that inherit the environment), and `harness serve` starts a server process, so the variable is set
for those starts only: `preloaded()` around the offline engine's construction, `preload_env(env)` for the
server. The harness's own process and its other children (the report's browser, git) are untouched.
Found: tcmalloc from Debian's `libtcmalloc-minimal4` (scripts/install.sh installs it where it can).
Absent: nothing is preloaded and the engine runs as before. `HARNESS_PRELOAD=0` turns it off."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, MutableMapping

TCMALLOC = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
            "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib64/libtcmalloc_minimal.so.4")


def tcmalloc_path() -> str | None:
    """Debian's tcmalloc on this machine, or None (bench/defaults.py measures the same file)."""
    return next((p for p in TCMALLOC if os.path.isfile(p)), None)


def preload_libs() -> list[str]:
    """The libraries to preload on this machine (empty when turned off or absent)."""
    if os.environ.get("HARNESS_PRELOAD", "1") == "0":
        return []
    found = tcmalloc_path()
    return [found] if found else []


def preload_env(env: MutableMapping[str, str]) -> list[str]:
    """Put the libraries in `env`'s LD_PRELOAD (first, keeping what is there); returns what was added."""
    have = [p for p in env.get("LD_PRELOAD", "").split(":") if p]
    add = [p for p in preload_libs() if "libtcmalloc" not in " ".join(have)]
    if add:
        env["LD_PRELOAD"] = ":".join(add + have)
    return add


@contextmanager
def preloaded() -> Iterator[list[str]]:
    """LD_PRELOAD set in this process's environment while an engine is spawned, then restored."""
    before = os.environ.get("LD_PRELOAD")
    added = preload_env(os.environ)
    try:
        yield added
    finally:
        if before is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = before
