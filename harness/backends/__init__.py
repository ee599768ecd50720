"""Backends: one batch method, generate(requests) -> completions (same order)."""
from .base import Backend

__all__ = ["Backend"]
