"""What this machine's CPU can do, as the engine's defaults need it."""
from __future__ import annotations

BF16_MATMUL_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags /proc/cpuinfo lists (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_bf16_matmul() -> bool:
    """True when the CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & BF16_MATMUL_FLAGS)
