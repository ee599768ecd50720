"""Which replica of `--backend ray` takes a chunk: prefix-aware, load-bounded (pure; see harness/backends/ray.py).

A chunk's key is the most common shared prompt prefix of its requests (`prefix_key`). A key goes back to the
replica it went to before (whose prefix cache holds it) unless that replica is full or more than a chunk
ahead of the least loaded one; then it moves there (its prefix is computed once more).
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Sequence

from ..records import Request

DEPTH = 2  # chunks queued per replica: one running, one waiting, so a replica never idles between chunks

def prefix_key(request: Request) -> str | None:
    """What a request shares with others at its start, or None.

    >>> from harness.records import Message
    >>> prefix_key(Request("a", (Message("system", "S"), Message("user", "Q1"), Message("assistant", "A1"), Message("user", "Q"))))
    '[["system", "S"], ["user", "Q1"], ["assistant", "A1"]]'
    >>> prefix_key(Request("b", (Message("user", "Q"),))) is None
    True
    """
    if request.prompt is not None:
        head, sep, _ = request.prompt.rpartition("\n\n")
        return head if sep else None
    if len(request.messages) < 2:
        return None
    return json.dumps([[m.role, m.content] for m in request.messages[:-1]], ensure_ascii=False)


def chunk_key(requests: Sequence[Request]) -> str | None:
    keys = Counter(k for k in map(prefix_key, requests) if k is not None)
    return keys.most_common(1)[0][0] if keys else None


class Router:
    """Which replica takes the next chunk (see the module docstring). `load` counts requests in flight."""

    def __init__(self, replicas: int, *, depth: int = DEPTH) -> None:
        self.depth = depth
        self.load = [0] * replicas
        self.queued = [0] * replicas
        self.live = set(range(replicas))
        self.home: dict[str, int] = {}

    def pick(self, key: str | None, size: int) -> int | None:
        """A replica with room, or None (wait for one)."""
        free = [r for r in sorted(self.live) if self.queued[r] < self.depth]
        if not free:
            return None
        least = min(free, key=lambda r: (self.load[r], r))
        home = self.home.get(key) if key is not None else None
        r = home if home in free and self.load[home] - self.load[least] <= size else least
        if key is not None:
            self.home[key] = r
        self.load[r] += size
        self.queued[r] += 1
        return r

    def done(self, r: int, size: int) -> None:
        self.load[r] -= size
        self.queued[r] -= 1
