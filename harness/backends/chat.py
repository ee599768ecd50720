"""Helpers every chat backend shares: messages as dicts, stop strings, running async code from sync code."""
from __future__ import annotations

import asyncio
from typing import Any, Sequence

from ..records import Message, Request


def message_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Messages -> OpenAI-style dicts (`LLM.chat`, `apply_chat_template`, the chat API, the prompt column)."""
    return [{"role": m.role, "content": m.content} for m in messages]


def to_chat_messages(request: Request) -> list[dict[str, str]]:
    """Request -> OpenAI-style messages.

    >>> to_chat_messages(Request("k", (Message("user", "Hi"),)))
    [{'role': 'user', 'content': 'Hi'}]
    """
    return message_dicts(request.messages)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string (for engines that ignore `stop`, such as beam search);
    (text, whether it was cut).

    >>> cut_at_stop("a. b. c", [". c", ". b"])
    ('a', True)
    """
    cuts = [text.find(s) for s in stop if s and s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


def run_sync(coro: Any, *, loop: asyncio.AbstractEventLoop | None = None) -> Any:
    """Run a coroutine from sync code, also when an event loop is already running (notebooks: then in a
    worker thread). `loop`: run on that loop (kept across calls) instead of a fresh one."""
    run = loop.run_until_complete if loop is not None else asyncio.run
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run, coro).result()
