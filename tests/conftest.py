"""Shared fixtures. `engine`: ONE real vLLM engine on the bundled model for the whole session.

The environment is set at import time, before anything imports vllm: no network, and vLLM's
cache and RPC sockets go to a temporary folder. The bundled model is converted once into
$HARNESS_CACHE_DIR (default ~/.cache/harness) and reused by later sessions.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_VLLM_TMP = tempfile.mkdtemp(prefix="harness-test-vllm-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["VLLM_CACHE_ROOT"] = os.path.join(_VLLM_TMP, "cache")
os.environ["VLLM_RPC_BASE_PATH"] = os.path.join(_VLLM_TMP, "rpc")
os.makedirs(os.environ["VLLM_RPC_BASE_PATH"], exist_ok=True)
# The request cache of the tests' runs lives and dies with the session (the converted model does not).
os.environ["HARNESS_REQUEST_CACHE_DIR"] = os.path.join(_VLLM_TMP, "request-cache")
# A warm engine the user started (`harness engine start`) is never used by the tests' runs; tests that
# start one set their own folder.
os.environ["HARNESS_RUNTIME_DIR"] = os.path.join(_VLLM_TMP, "runtime")

from harness.system.procs import guard  # noqa: E402

# However the session ends (SIGKILL included), no engine, server or `harness run` it started outlives it.
guard()


@pytest.fixture(scope="session")
def engine():
    """One `VLLMBackend()` on the bundled SmolLM2-135M-Instruct, shared by every engine test.
    The machine may have 2 cores: never start a second engine while this one lives."""
    from harness.backends.vllm import VLLMBackend

    backend = VLLMBackend(use_tqdm=False)
    backend.llm  # start now, so the first test does not carry the start-up time
    yield backend
    backend.close()


WARM_ENGINE_FLAGS = ("--dtype", "float32")


@pytest.fixture(scope="session")
def warm_engine(tmp_path_factory):
    """ONE warm engine (`harness engine start --dtype float32`) for the session, in its own runtime folder:
    (folder, its state). tests/test_listeners.py reads its sockets; tests/test_warm_engine.py runs against it
    and finally stops it (`harness engine stop` is one of its tests). Stopped here if still running."""
    import json
    import subprocess
    import sys

    rt = tmp_path_factory.mktemp("warm-rt")
    env = {**os.environ, "HARNESS_RUNTIME_DIR": str(rt)}
    r = subprocess.run([sys.executable, "-m", "harness.cli", "engine", "start", *WARM_ENGINE_FLAGS, "--idle", "120"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    yield rt, json.loads((rt / "engine.json").read_text())
    if (rt / "engine.json").exists():
        subprocess.run([sys.executable, "-m", "harness.cli", "engine", "stop"], env=env, timeout=120,
                       capture_output=True)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_VLLM_TMP, ignore_errors=True)
