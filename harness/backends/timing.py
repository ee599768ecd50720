"""Per-request timing of a batched engine call (the rule is in vllm.py's module docstring)."""
from __future__ import annotations

from typing import Any, Sequence


def apportion(wall_s: float, weights: Sequence[int]) -> list[float]:
    """Split `wall_s` in proportion to `weights` (equal shares if all are 0)."""
    total = sum(weights)
    if total <= 0:
        return [wall_s / len(weights)] * len(weights) if weights else []
    return [wall_s * w / total for w in weights]


def _timing(metrics: Any) -> tuple[float | None, float | None]:
    """(latency_s, ttft_s) from a `RequestStateStats`, or (None, None)."""
    if metrics is None or not getattr(metrics, "first_token_ts", 0.0):
        return None, None
    ttft = float(metrics.first_token_latency)
    return ttft + max(0.0, metrics.last_token_ts - metrics.first_token_ts), ttft
