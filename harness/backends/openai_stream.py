"""The OpenAI-compatible backend's response parsing: a response, or the chunks of a streamed one,
-> a Completion (texts, token counts, finish reasons, logprobs, time to first token, inter-token latency)."""
from __future__ import annotations

import time
from typing import Any

from ..errors import BackendError
from ..records import Completion, Request
from .openai_translate import _wants_logprobs


def _split(total: int | None, n: int) -> tuple[int, ...]:
    if total is None or n <= 0:
        return ()
    q, r = divmod(int(total), n)
    return tuple(q + (1 if i < r else 0) for i in range(n))


def _logprob_values(logprobs: Any) -> list[float]:
    """Token logprobs of one choice (chat: .content[].logprob; completions: .token_logprobs)."""
    if logprobs is None:
        return []
    content = getattr(logprobs, "content", None)
    if content is not None:
        return [float(t.logprob) for t in content]
    return [float(x) for x in (getattr(logprobs, "token_logprobs", None) or []) if x is not None]


def _choice_text(choice: Any) -> str:
    msg = getattr(choice, "message", None)
    if msg is not None:
        return msg.content or ""
    delta = getattr(choice, "delta", None)
    if delta is not None:
        return delta.content or ""
    return getattr(choice, "text", None) or ""


def _cached(usage: Any) -> int | None:
    details = getattr(usage, "prompt_tokens_details", None) if usage is not None else None
    value = getattr(details, "cached_tokens", None) if details is not None else None
    return int(value) if value is not None else None


def _from_response(resp: Any, req: Request, start: float) -> Completion:
    """A non-streamed response -> Completion (ttft_s is None)."""
    choices = sorted(resp.choices, key=lambda c: c.index)
    usage = resp.usage
    lps = [_logprob_values(c.logprobs) for c in choices]
    tokens = tuple(len(x) for x in lps) if _wants_logprobs(req) and all(lps) else \
        _split(usage.completion_tokens if usage else None, len(choices))
    return Completion(texts=tuple(_choice_text(c) for c in choices),
                      prompt_tokens=usage.prompt_tokens if usage else None, completion_tokens=tokens,
                      finish_reasons=tuple(c.finish_reason for c in choices),
                      cumulative_logprobs=tuple(sum(x) for x in lps) if lps and all(lps) else (),
                      latency_s=time.perf_counter() - start, cached_prompt_tokens=_cached(usage))


class _StreamAccumulator:
    """Collects the chunks of one streamed response, by choice index, with their arrival times."""

    def __init__(self, n: int, start: float) -> None:
        self.n, self.start = n, start
        self.parts: list[list[str]] = [[] for _ in range(n)]
        self.reasons: list[str | None] = [None] * n
        self.logprobs: list[list[float]] = [[] for _ in range(n)]
        self.tokens: list[int | None] = [None] * n   # from vLLM's continuous usage stats
        self.first: list[float | None] = [None] * n  # first text chunk per sample
        self.last: list[float | None] = [None] * n   # last chunk per sample
        self.ttft: float | None = None
        self.usage: Any = None

    def add(self, chunk: Any, now: float) -> None:
        if getattr(chunk, "usage", None) is not None and not chunk.choices:
            self.usage = chunk.usage
            return
        for c in chunk.choices:
            i = c.index
            if i >= self.n:
                continue
            text = _choice_text(c)
            if text:
                self.parts[i].append(text)
                if self.first[i] is None:
                    self.first[i] = now
                if self.ttft is None:
                    self.ttft = now - self.start
            if self.first[i] is not None:
                self.last[i] = now
            self.logprobs[i].extend(_logprob_values(c.logprobs))
            if c.finish_reason is not None:
                self.reasons[i] = c.finish_reason
            if getattr(chunk, "usage", None) is not None:
                self.tokens[i] = chunk.usage.completion_tokens

    def finish_counts(self) -> tuple[int, ...]:
        if all(t is not None for t in self.tokens):
            return tuple(int(t) for t in self.tokens)  # type: ignore[arg-type]
        if all(self.logprobs):
            return tuple(len(x) for x in self.logprobs)
        return _split(self.usage.completion_tokens if self.usage else None, self.n)

    def finish(self, now: float) -> tuple[Completion, float | None]:
        missing = [i for i, f in enumerate(self.reasons) if f is None]
        if missing:  # a connection closed mid-stream ends the iteration quietly: never keep half a text
            raise BackendError(f"the stream ended before sample(s) {missing} finished (connection dropped?)",
                               retryable=True)
        counts = self.finish_counts()
        gaps = []
        for i in range(self.n):
            toks = counts[i] if i < len(counts) else None
            if self.first[i] is not None and self.last[i] is not None and toks and toks > 1:
                gaps.append((self.last[i] - self.first[i]) / (toks - 1))
        comp = Completion(
            texts=tuple("".join(p) for p in self.parts), prompt_tokens=self.usage.prompt_tokens if self.usage else None,
            completion_tokens=counts, finish_reasons=tuple(self.reasons),
            cumulative_logprobs=tuple(sum(x) for x in self.logprobs) if all(self.logprobs) else (),
            latency_s=now - self.start, ttft_s=self.ttft, cached_prompt_tokens=_cached(self.usage))
        return comp, (sum(gaps) / len(gaps) if gaps else None)
