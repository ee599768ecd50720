"""The OpenAI-compatible backend's retry policy: which failures are retried, and after how long.

408, 409, 429, 5xx, timeouts and dropped connections are retryable; the delay is the server's
Retry-After when it sends one (capped at 60 s), else exponential backoff with jitter.
"""
from __future__ import annotations

import asyncio
import random
import time
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import HarnessError

RETRY_STATUS = frozenset({408, 409, 429})
MAX_RETRY_AFTER_S = 60.0


def retry_after_s(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` / `Retry-After` (seconds or an HTTP date), capped at 60."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    try:
        if ms is not None:
            return min(max(float(ms) / 1000, 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        try:
            return min(max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0), MAX_RETRY_AFTER_S)
        except (TypeError, ValueError):
            return None


def backoff_s(attempt: int, *, base: float, retry_after: float | None = None) -> float:
    """Delay before attempt `attempt + 1`: the server's Retry-After if given, else exponential with jitter."""
    if retry_after is not None:
        return retry_after
    step = base * 2 ** (attempt - 1)
    return step * random.uniform(0.5, 1.0)


def classify(exc: BaseException) -> tuple[str, bool, float | None]:
    """An exception from one attempt -> (error text, retryable, Retry-After seconds)."""
    import openai

    transport = _transport_errors()
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        text = f"HTTP {status}: {_message(exc)}"
        retryable = status in RETRY_STATUS or status >= 500
        return text, retryable, retry_after_s(getattr(exc.response, "headers", None))
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out", True, None
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {exc.__cause__ or exc}", True, None
    if isinstance(exc, transport):
        return f"connection dropped: {type(exc).__name__}: {exc}", True, None
    if isinstance(exc, asyncio.TimeoutError):
        return "request timed out", True, None
    if isinstance(exc, HarnessError):
        return exc.one_line(), getattr(exc, "retryable", False), None
    if isinstance(exc, openai.APIError):
        return f"server error: {_message(exc)}", False, None
    return f"{type(exc).__name__}: {exc}", False, None


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return " ".join(str(inner["message"]).split())
        if isinstance(inner, str):
            return inner
    return " ".join(str(getattr(exc, "message", exc)).split())


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's transport errors (raised mid-stream): openai 3.x uses httpx2, 1.x httpx."""
    out = []
    for name in ("httpx2", "httpx"):
        try:
            out.append(__import__(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(out)
