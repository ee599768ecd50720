"""The backend protocol: one batch method."""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ..records import Completion, Request


@runtime_checkable
class Backend(Protocol):
    """`generate` receives every request of a chunk at once and returns one Completion per request,
    in order. A request that fails returns `Completion.failed(...)`; it never raises for one bad row."""

    model_name: str

    def generate(self, requests: Sequence[Request]) -> list[Completion]: ...
