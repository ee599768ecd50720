"""The request cache: identical requests in later runs are answered from disk.

Key = sha256 of (model identity, rendered messages, sampling settings incl. seed and n, output type,
continuations). Only successful completions are stored; errors are always retried. Rows answered
from the cache carry `cached = True` and keep the token counts and latency of the original call.
Location: $HARNESS_REQUEST_CACHE_DIR, else $HARNESS_CACHE_DIR (default ~/.cache/harness),
or `--cache-dir`;
`--no-cache` turns it off. Nothing secret is stored: no API keys, only prompts and outputs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .base import Backend, BackendBase, ChunkResult
from ..records import Completion, Request


def default_cache_dir() -> Path:
    if os.environ.get("HARNESS_REQUEST_CACHE_DIR"):
        return Path(os.environ["HARNESS_REQUEST_CACHE_DIR"])
    from ..system.paths import cache_dir

    return cache_dir()


def model_identity(backend: Backend) -> str:
    """What makes two backends answer a request the same way (never an API key): the backend's own
    `identity()` (see harness.backends.base)."""
    return backend.identity()


def request_key(model_identity: str, req: Request) -> str:
    payload = {
        "model": model_identity,
        "messages": [[m.role, m.content] for m in req.messages],
        "sampling": req.sampling.as_dict(),
        "output_type": [req.output_type.kind, req.output_type.spec] if req.output_type else None,
        "continuations": list(req.continuations),
    }
    if req.prompt is not None:  # completion format (chat-format keys stay as they were)
        payload["prompt"] = req.prompt
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class RequestCache:
    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder else default_cache_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "requests.sqlite"
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.db.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        out: dict[str, Completion] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), 500):
            part = uniq[i:i + 500]
            rows = self.db.execute(f"SELECT key, value FROM completions WHERE key IN ({','.join('?' * len(part))})",
                                   part).fetchall()
            for key, value in rows:
                out[key] = _decode(value)
        return out

    def put_many(self, items: Sequence[tuple[str, Completion]]) -> None:
        rows = [(k, _encode(c)) for k, c in items if c.error is None and not c.cached]
        if rows:
            self.db.executemany("INSERT OR REPLACE INTO completions (key, value) VALUES (?, ?)", rows)
            self.db.commit()

    def close(self) -> None:
        self.db.close()


def _encode(c: Completion) -> str:
    return json.dumps(dataclasses.asdict(c))


def _decode(text: str) -> Completion:
    d = json.loads(text)
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    d["cached"] = True
    return Completion(**d)


class CachedBackend(BackendBase):
    """Wraps a backend: answers what the cache holds, sends the rest in one batch, stores the new ones.
    The rest of the contract is the wrapped backend's (delegated explicitly, method by method)."""

    name = "cached"

    def __init__(self, backend: Backend, cache: RequestCache, *, identity: str | None = None) -> None:
        self.backend = backend
        self.cache = cache
        self.key_identity = identity if identity is not None else backend.identity()
        self.model_name = backend.model_name
        self.model_path = backend.model_path
        self.preferred_chunk_size = backend.preferred_chunk_size
        self.spawns_processes = backend.spawns_processes
        self.supports_prefix_cache_reset = backend.supports_prefix_cache_reset

    def start(self) -> None:
        self.backend.start()

    def close(self) -> None:
        self.backend.close()

    def stats(self) -> dict[str, float]:
        return self.backend.stats()

    def quiet(self) -> None:
        self.backend.quiet()

    def rename(self, model_name: str) -> None:
        self.backend.rename(model_name)
        self.model_name = model_name

    def reset_prefix_cache(self) -> bool:
        return self.backend.reset_prefix_cache()

    def engine_settings(self) -> dict:
        return self.backend.engine_settings()

    def identity(self) -> str:
        return self.key_identity

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return next(iter(self.generate_chunks([requests]))).completions

    def generate_chunks(self, chunks: Iterable[Sequence[Request]]) -> Iterator[ChunkResult]:
        """Each chunk is looked up as the wrapped backend asks for it (so a later chunk finds what an earlier
        one stored); the misses go to the wrapped backend's `generate_chunks`, a chunk answered wholly from
        the cache is yielded next to them (seconds 0: no engine time)."""
        looked: list[tuple[int, list[str], dict[str, Completion], list[int]]] = []
        ready: list[ChunkResult] = []

        def misses():
            for n, requests in enumerate(chunks):
                keys = [request_key(self.key_identity, r) for r in requests]
                hits = self.cache.get_many(keys)
                todo = [i for i, k in enumerate(keys) if k not in hits]
                if todo:
                    looked.append((n, keys, hits, todo))
                    yield [requests[i] for i in todo]
                else:
                    ready.append(ChunkResult(n, [hits[k] for k in keys], 0.0))

        for res in self.backend.generate_chunks(misses()):
            yield from _drain(ready)
            n, keys, hits, todo = looked[res.index]
            self.cache.put_many([(keys[i], c) for i, c in zip(todo, res.completions)])
            out: list[Completion | None] = [hits.get(k) for k in keys]
            for i, c in zip(todo, res.completions):
                out[i] = c
            yield ChunkResult(n, out, res.seconds, res.where)  # type: ignore[arg-type]
        yield from _drain(ready)


def _drain(ready: list[ChunkResult]) -> Iterator[ChunkResult]:
    while ready:
        yield ready.pop(0)
