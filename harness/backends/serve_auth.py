"""The key check `harness serve --api-key-env NAME` adds to vLLM's server: every path but /health needs the key.

vLLM 0.32's own check (`--api-key`, or VLLM_API_KEY) guards only paths under /v1, /v2, /inference and
/cohere. Its server answers others without a key, and some of them run the model: /invocations (the
SageMaker route: it takes chat and completion requests), /generative_scoring; others tell about it:
/tokenize, /detokenize, /metrics, /load, /scale_elastic_ep (docs/security.md lists what was measured).
This pure ASGI middleware, loaded with vLLM's `--middleware harness.backends.serve_auth.RequireKey`,
answers 401 to any request without `Authorization: Bearer KEY`, except GET /health (the harness's own
readiness check) and CORS preflights. The key comes from VLLM_API_KEY in the server's environment, never
from its command line. It imports nothing from the harness: it runs inside vLLM's server process.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any, Awaitable, Callable

KEY_VAR = "VLLM_API_KEY"
OPEN_PATHS = frozenset({"/health"})

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class RequireKey:
    """ASGI middleware: 401 unless the bearer token is the key in $VLLM_API_KEY (see the module doc)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        key = os.environ.get(KEY_VAR)
        if not key:
            raise RuntimeError(f"harness.backends.serve_auth.RequireKey needs the key in ${KEY_VAR}")
        self.app = app
        self._key = _digest(key)

    def allowed(self, scope: Scope) -> bool:
        if scope.get("method") == "OPTIONS" or scope.get("path") in OPEN_PATHS:
            return True
        for name, value in scope.get("headers") or ():
            if name.lower() == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(_digest(token.strip()), self._key)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            body = json.dumps({"error": "Unauthorized"}).encode()
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
