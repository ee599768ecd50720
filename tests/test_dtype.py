"""The engine's default dtype follows the CPU (docs/engine.md, "The model dtype")."""
from __future__ import annotations

import pytest

from harness.backends import vllm as vllm_backend
from harness.system import cpu


@pytest.mark.parametrize("flags, want", [({"avx2", "fma"}, "float32"), ({"avx2", "avx512f"}, "float32"),
                                         ({"avx512f", "avx512_bf16"}, "bfloat16"), ({"amx_bf16"}, "bfloat16"),
                                         (set(), "float32")])
def test_cpu_default_dtype_is_bf16_only_with_bf16_matrix_instructions(monkeypatch, flags, want):
    monkeypatch.setattr(vllm_backend, "_cuda_available", lambda: False)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    assert vllm_backend.default_dtype() == want
    backend = vllm_backend.VLLMBackend(use_tqdm=False)  # not started: only its settings are read
    assert backend.engine_settings()["dtype"] == want
    assert vllm_backend.VLLMBackend(dtype="bfloat16", use_tqdm=False).engine_settings()["dtype"] == "bfloat16"


def test_gpu_default_dtype_is_bf16(monkeypatch):
    monkeypatch.setattr(vllm_backend, "_cuda_available", lambda: True)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset())
    assert vllm_backend.default_dtype() == "bfloat16"


def test_cpu_flags_read_this_machines_cpuinfo():
    """Against /proc/cpuinfo read here without the harness's parser."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:  # no cpuinfo: no flags, and so float32
        text = ""
    lines = [ln for ln in text.splitlines() if ln.startswith("flags")]
    want = set(lines[0].partition(":")[2].split()) if lines else set()
    assert cpu.cpu_flags() == want
    assert cpu.has_bf16_matmul() == bool(want & {"avx512_bf16", "amx_bf16"})
