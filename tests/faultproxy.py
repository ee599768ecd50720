"""A fault-injecting HTTP proxy in front of a real (local) vLLM server, for the fault tests.

    >>> with FaultProxy("http://127.0.0.1:8000/v1") as proxy:     # doctest: +SKIP
    ...     proxy.set_mode("status", count=3)                     # the next 3 POSTs get 500, 503, 500
    ...     OpenAIBackend([proxy.url]).generate(requests)         # retried, then passed through

It listens on 127.0.0.1 only and forwards only to 127.0.0.1 / localhost. Responses are streamed
through chunk by chunk (SSE stays SSE, so time to first token still means something). The mode can
be switched from any thread; the proxy runs its own event loop in a daemon thread and stops by itself
after `max_lifetime_s` if nobody stops it.

Modes (faults hit POST requests whose messages contain `match` (one string, or any of several), all
POSTs when it is None; GETs such as /v1/models always pass, except while the proxy is down):
    pass        forward
    status      answer `codes` (cycled) for the next `count` requests, then pass
    rate_limit  answer 429 with `Retry-After: retry_after` for the next `count`, then pass
    hang        accept and never answer the next `count` (the client has to time out), then pass
    drop        forward, then cut the connection after `drop_after_bytes` of the body, next `count`
    down        let `after` more requests through, then close the listening socket and cut every open
                connection (a killed server); stays down until `set_mode("pass")` listens again
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MODES = ("pass", "status", "rate_limit", "hang", "drop", "down")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade",
                         "proxy-connection", "te", "trailer"})


@dataclass(frozen=True)
class Hit:
    """One request the proxy saw: when (monotonic), what, and what it did to it."""

    t: float
    method: str
    path: str
    action: str      # pass | status:500 | rate_limit | hang | drop | down
    text: str        # the request's message contents joined (to tell rows apart)


class FaultProxy:
    def __init__(self, upstream: str, *, port: int = 0, max_lifetime_s: float = 900) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in LOCAL_HOSTS:
            raise ValueError(f"the fault proxy only forwards to 127.0.0.1, not {parts.hostname}")
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self.port = port
        self.max_lifetime_s = max_lifetime_s
        self.hits: list[Hit] = []
        self.auth_digests: set[str] = set()   # sha256 of Authorization headers seen (never the header)
        self._lock = threading.Lock()
        self._mode, self._count, self._after = "pass", 0, 0
        self._codes: tuple[int, ...] = (500, 503)
        self._code_cycle = itertools.cycle(self._codes)
        self._retry_after, self._drop_after = "1", 200
        self._match: tuple[str, ...] | None = None
        self._down = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._live: set[Any] = set()          # transports of requests being handled

    # ------------------------------------------------------------------ control (any thread)
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FaultProxy":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(30) or self._loop is None:
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        """Idempotent: cancels hung requests, closes every connection, ends the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(15)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def set_mode(self, mode: str, *, count: int = 1, codes: tuple[int, ...] = (500, 503), retry_after: float = 1,
                 drop_after_bytes: int = 200, after: int = 0, match: str | tuple[str, ...] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        with self._lock:
            self._mode, self._count, self._after = mode, count, after
            self._match = (match,) if isinstance(match, str) else match
            self._codes, self._code_cycle = tuple(codes), itertools.cycle(codes)
            self._retry_after, self._drop_after = f"{retry_after:g}", drop_after_bytes
            was_down = self._down
        if mode == "down" and after == 0:
            self._call(self._go_down())
        elif mode != "down" and was_down:
            self._call(self._go_up())

    @property
    def mode(self) -> str:
        with self._lock:
            return "down" if self._down else self._mode

    def posts(self, action: str | None = None, *, since: float = 0.0) -> list[Hit]:
        """POST requests seen (optionally only those given `action`, a prefix such as 'status')."""
        with self._lock:
            return [h for h in self.hits if h.method == "POST" and h.t >= since
                    and (action is None or h.action.startswith(action))]

    def _call(self, coro: Any) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    # ------------------------------------------------------------------ the event loop
    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main(ready))
        finally:
            self._loop.close()

    async def _main(self, ready: threading.Event) -> None:
        import aiohttp
        from aiohttp import web

        self._stopping = asyncio.Event()
        self._session = aiohttp.ClientSession(auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=None, sock_read=120))
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await self._listen()
        self._loop.call_later(self.max_lifetime_s, self._stopping.set)  # bounded: never outlives a session
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            self._abort_live()
            await self._runner.cleanup()
            await self._session.close()

    async def _listen(self) -> None:
        from aiohttp import web

        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            self.port = self._site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _go_down(self) -> None:
        with self._lock:
            if self._down:
                return
            self._down = True
        await self._site.stop()   # new connections are refused
        self._abort_live()        # open ones are cut, as when the server process dies

    async def _go_up(self) -> None:
        with self._lock:
            self._down = False
        await self._listen()

    def _abort_live(self) -> None:
        for transport in list(self._live):
            transport.abort()
        self._live.clear()

    # ------------------------------------------------------------------ one request
    def _decide(self, method: str, path: str, text: str) -> str:
        with self._lock:
            action = "pass"
            if self._down:
                action = "down"
            elif method == "POST" and (self._match is None or any(m in text for m in self._match)):
                if self._mode == "down":
                    if self._after > 0:
                        self._after -= 1
                    else:
                        action = "down"
                elif self._mode != "pass" and self._count > 0:
                    self._count -= 1
                    action = f"status:{next(self._code_cycle)}" if self._mode == "status" else self._mode
                    if self._count == 0:
                        self._mode = "pass"
            self.hits.append(Hit(time.monotonic(), method, path, action, text))
            return action

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        auth = request.headers.get("Authorization")
        if auth:
            self.auth_digests.add(hashlib.sha256(auth.encode()).hexdigest())
        action = self._decide(request.method, request.path, _messages_text(body))
        transport = request.transport
        if action == "down":
            await self._go_down()
            if transport is not None:
                transport.abort()
            return web.Response(status=503)  # never sent: the connection is gone
        if action.startswith("status:"):
            code = int(action.split(":")[1])
            return web.json_response({"error": {"message": f"injected {code}", "type": "server_error",
                                                "code": code}}, status=code)
        if action == "rate_limit":
            return web.json_response({"error": {"message": "injected rate limit", "type": "rate_limit",
                                                "code": 429}}, status=429,
                                     headers={"Retry-After": self._retry_after})
        if transport is not None:
            self._live.add(transport)
        try:
            if action == "hang":
                await self._stopping.wait()
                if transport is not None:
                    transport.abort()
                return web.Response(status=503)
            return await self._forward(request, body, drop_after=self._drop_after if action == "drop" else None)
        finally:
            self._live.discard(transport)

    async def _forward(self, request: Any, body: bytes, *, drop_after: int | None) -> Any:
        from aiohttp import web

        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None) as up:
            resp = web.StreamResponse(status=up.status, reason=up.reason,
                                      headers={k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS})
            await resp.prepare(request)
            sent = 0
            try:
                async for chunk in up.content.iter_any():
                    if drop_after is not None and sent + len(chunk) >= drop_after:
                        await resp.write(chunk[: max(drop_after - sent, 1)])
                        await asyncio.sleep(0.05)  # let the partial bytes reach the client, then cut
                        if request.transport is not None:
                            request.transport.abort()
                        return resp
                    await resp.write(chunk)
                    sent += len(chunk)
                await resp.write_eof()
            except ConnectionError:  # the client went away, or the proxy went down: nothing to answer
                pass
            return resp


def _messages_text(body: bytes) -> str:
    """The message contents (chat) or prompt (completions) of a JSON request body, joined."""
    try:
        obj = json.loads(body) if body else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    if not isinstance(obj, dict):
        return ""
    msgs = obj.get("messages") or []
    parts = [str(m.get("content", "")) for m in msgs if isinstance(m, dict)]
    if isinstance(obj.get("prompt"), str):
        parts.append(obj["prompt"])
    return "\n".join(parts)
