"""An in-memory backend driven by a function, for unit tests of strategies, scoring and statistics
(and the harness-only throughput benchmark). Never the only test of a real backend."""
from __future__ import annotations

from typing import Callable, Sequence

from ..records import Completion, Request
from .base import BackendBase


class ScriptedBackend(BackendBase):
    """`fn(request) -> str | list[str] | Completion`. Token counts are whitespace word counts."""

    name = "scripted"

    def __init__(self, fn: Callable[[Request], object], *, model_name: str = "scripted") -> None:
        self.fn = fn
        self.model_name = model_name
        self.model_path = model_name
        self.calls: list[int] = []  # size of each generate() batch

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        self.calls.append(len(requests))
        out = []
        for r in requests:
            res = self.fn(r)
            if isinstance(res, Completion):
                out.append(res)
                continue
            texts = (res,) * r.sampling.n if isinstance(res, str) else tuple(res)
            prompt_tokens = sum(len(m.content.split()) for m in r.messages) + len((r.prompt or "").split())
            out.append(Completion(texts=texts, prompt_tokens=prompt_tokens,
                                  completion_tokens=tuple(len(t.split()) for t in texts),
                                  finish_reasons=("stop",) * len(texts), latency_s=0.0))
        return out

    def engine_settings(self) -> dict:
        return {"backend": "scripted", "endpoint": getattr(self.fn, "__qualname__", repr(self.fn))}
