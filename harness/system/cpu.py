"""What this machine's CPU can do, as the engine's defaults need it."""
from __future__ import annotations

import os

# what a GPU driver leaves on the machine (NVIDIA, ROCm, WSL); without any, torch.cuda.is_available() is False
GPU_DEVICE_PATHS = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")
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


def cuda_available() -> bool:
    """`torch.cuda.is_available()`, without importing torch (5 s on a busy 2-core machine) where no GPU driver
    is present: a run that uses the warm engine needs the engine's default settings, not torch."""
    if not any(os.path.exists(p) for p in GPU_DEVICE_PATHS):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
