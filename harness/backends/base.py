"""The backend contract: one batch method, plus a small declared lifecycle with no-op defaults.

    class EchoBackend(BackendBase):
        name = "echo"
        model_name = "echo"

        def generate(self, requests):
            return [Completion(texts=(r.messages[-1].content,)) for r in requests]

`generate` is the only method a backend must write. Everything else the runner calls (start, close,
stats, engine_settings, identity, preferred_chunk_size, model_path) is declared here with a default
that does nothing, so the runner calls it unconditionally and never asks `hasattr`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Iterator, Protocol, Sequence, runtime_checkable

from ..records import Completion, Request

# settings that change what a backend answers (part of the cache identity); never a secret
IDENTITY_SETTINGS = ("backend", "dtype", "enforce_eager", "base_urls", "endpoint", "kv_cache_dtype",
                     "speculative_config")


@dataclass(frozen=True)
class ChunkResult:
    """One chunk's answers from `generate_chunks`: its index in the chunks given, one Completion per request,
    the seconds the engine spent on it, and where it ran (a replica, its node, the attempt: None for one
    local engine; the runner journals it with the chunk's units)."""

    index: int
    completions: list[Completion]
    seconds: float
    where: dict[str, Any] | None = None


@runtime_checkable
class Backend(Protocol):
    """`generate` receives every request of a chunk at once and returns one Completion per request,
    in order. A request that fails returns `Completion.failed(...)`; it never raises for one bad row.
    The rest is the lifecycle the runner calls (see `BackendBase` for the defaults)."""

    name: str
    model_name: str
    model_path: str | None
    preferred_chunk_size: int | None
    spawns_processes: bool
    supports_prefix_cache_reset: bool

    def generate(self, requests: Sequence[Request]) -> list[Completion]: ...

    def generate_chunks(self, chunks: Iterable[Sequence[Request]]) -> Iterator[ChunkResult]: ...

    def quiet(self) -> None: ...

    def rename(self, model_name: str) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def engine_settings(self) -> dict[str, Any]: ...

    def identity(self) -> str: ...


class BackendBase:
    """No-op defaults for the optional part of the contract; a backend overrides what it has.

    - `start()`: bring the engine up now (the runner calls it before it touches the run folder).
    - `close()`: free the engine (the runner calls it for a backend it built itself).
    - `stats()`: cumulative engine counters; the runner records this run's `stats_delta`.
    - `engine_settings()`: what run.json records about the engine (never a secret).
    - `identity()`: what makes two backends answer a request the same way (the request cache key).
    - `reset_prefix_cache()`: empty the engine's prefix cache, True if done (the latency probe calls it).
    - `preferred_chunk_size`: requests per journaled chunk (None: the runner's default, 512).
    - `model_path`: a local model folder or hub id, for the model facts in run.json (None: unknown).
    - `spawns_processes`: True when starting the backend spawns processes that re-import the main script
      (vLLM's offline engine): the runner then checks the script has a `__main__` guard.
    - `supports_prefix_cache_reset`: True when `reset_prefix_cache()` really empties a cache.
    - `quiet()`: no progress bars or logs of the backend's own (the harness shows one bar).
    - `rename(name)`: the display name rows carry (a resume of a folder written before run specs).
    - `generate_chunks(chunks)`: the run's chunks, answered as each is done (`ChunkResult`, any order); the
      default answers one at a time, in order, with `generate`. A backend of several engines (ray.py)
      works on several chunks at once.
    """

    name: ClassVar[str] = "backend"
    model_name: str = "model"
    model_path: str | None = None
    preferred_chunk_size: int | None = None
    spawns_processes: ClassVar[bool] = False
    supports_prefix_cache_reset: ClassVar[bool] = False

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        raise NotImplementedError

    def generate_chunks(self, chunks: Iterable[Sequence[Request]]) -> Iterator[ChunkResult]:
        for i, requests in enumerate(chunks):
            t0 = time.perf_counter()
            completions = self.generate(requests)
            yield ChunkResult(i, completions, time.perf_counter() - t0)

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None

    def stats(self) -> dict[str, float]:
        return {}

    def reset_prefix_cache(self) -> bool:
        return False

    def quiet(self) -> None:
        return None

    def rename(self, model_name: str) -> None:
        self.model_name = model_name

    def engine_settings(self) -> dict[str, Any]:
        return {"backend": self.name}

    def identity(self) -> str:
        """Model name and path plus the settings in IDENTITY_SETTINGS; extend with `identity_of`."""
        return identity_of(self)

    @classmethod
    def from_cli(cls, args: Any, *, model: str | None, engine_options: dict[str, Any]) -> "BackendBase":
        """Build the backend from `harness run`'s flags (an argparse namespace); see harness.backends.BACKENDS."""
        raise NotImplementedError(f"the {cls.name} backend cannot be built from the command line")


def identity_of(backend: Any, **extra: Any) -> str:
    """JSON of the model name and path, the identity settings of `engine_settings()`, and `extra`
    (a backend adds what else decides its answers). Sorted keys: the same backend gives the same text."""
    s = backend.engine_settings()
    return json.dumps({"model": backend.model_name, "path": str(backend.model_path),
                       **{k: s.get(k) for k in IDENTITY_SETTINGS if k in s}, **extra},
                      sort_keys=True, default=str)


def stats_delta(before: dict, after: dict) -> dict:
    """This run's share of the engine's cumulative counters (an engine may serve several runs);
    gauges (KV-cache usage) are kept as read; the prefix-cache hit rate is derived.

    >>> stats_delta({"prefix_cache_queries": 10, "prefix_cache_hits": 2}, {"prefix_cache_queries": 30, "prefix_cache_hits": 17})
    {'prefix_cache_queries': 20, 'prefix_cache_hits': 15, 'prefix_cache_hit_rate': 0.75}
    """
    out = {k: (v - before.get(k, 0) if k != "kv_cache_usage" else v) for k, v in after.items()}
    if out.get("prefix_cache_queries"):
        out["prefix_cache_hit_rate"] = out.get("prefix_cache_hits", 0) / out["prefix_cache_queries"]
    return out


def check_backend(backend: Any) -> Backend:
    """The runner's one check at the boundary: an object that does not implement the contract is a
    programming error, named here (inherit BackendBase to get the optional part for free)."""
    if not isinstance(backend, Backend):
        raise TypeError(f"{type(backend).__name__} does not implement the backend contract "
                        "(harness.backends.base.Backend): inherit harness.backends.BackendBase and write generate()")
    return backend
