"""preload.py without an engine: what goes into LD_PRELOAD, and that nothing breaks without it
(the engine-side check is test_vllm_backend.py::test_cpu_engine_defaults_...)."""
from __future__ import annotations

import os

from harness.backends import preload


def test_preload_env_puts_tcmalloc_first_and_keeps_what_was_there(monkeypatch, tmp_path):
    lib = tmp_path / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"")
    monkeypatch.setattr(preload, "TCMALLOC", (str(tmp_path / "absent.so"), str(lib)))
    monkeypatch.delenv("HARNESS_PRELOAD", raising=False)
    env = {"LD_PRELOAD": "/x/libgomp.so"}
    assert preload.preload_env(env) == [str(lib)]
    assert env["LD_PRELOAD"] == f"{lib}:/x/libgomp.so"
    assert preload.preload_env(env) == [] and env["LD_PRELOAD"].count("libtcmalloc") == 1  # never twice
    env = {}
    preload.preload_env(env)
    assert env == {"LD_PRELOAD": str(lib)}


def test_absent_or_turned_off_preloads_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(preload, "TCMALLOC", (str(tmp_path / "absent.so"),))
    env: dict[str, str] = {}
    assert preload.preload_env(env) == [] and env == {}
    lib = tmp_path / "libtcmalloc.so.4"
    lib.write_bytes(b"")
    monkeypatch.setattr(preload, "TCMALLOC", (str(lib),))
    monkeypatch.setenv("HARNESS_PRELOAD", "0")
    assert preload.preload_env(env) == [] and env == {}


def test_preloaded_restores_this_processs_environment(monkeypatch, tmp_path):
    lib = tmp_path / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"")
    monkeypatch.setattr(preload, "TCMALLOC", (str(lib),))
    monkeypatch.delenv("HARNESS_PRELOAD", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    with preload.preloaded() as added:
        assert added == [str(lib)] and os.environ["LD_PRELOAD"] == str(lib)
    assert "LD_PRELOAD" not in os.environ
    monkeypatch.setenv("LD_PRELOAD", "/y/libfoo.so")
    with preload.preloaded():
        assert os.environ["LD_PRELOAD"] == f"{lib}:/y/libfoo.so"
    assert os.environ["LD_PRELOAD"] == "/y/libfoo.so"
