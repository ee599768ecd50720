"""The records that flow through the harness.

Task -> Strategy.expand(example) -> [Request] -> Backend.generate -> [Completion]
     -> Strategy.reduce(example, completions) -> Prediction -> Scorer -> row

Every record is a frozen dataclass; requests and responses are separate objects.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Example:
    """One item of a task: template variables, the gold answer and, for multiple choice, the options."""

    id: str
    fields: Mapping[str, Any]
    gold: Any
    choices: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    rationale: str | None = None


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. temperature == 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = 0
    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    n: int = 1
    beam_width: int = 0  # >0 selects beam search
    logprobs: bool = False

    def as_dict(self) -> dict[str, Any]:
        # built field by field: dataclasses.asdict deep-copies every value, which was a third of the
        # harness's own time per example (bench P5)
        d = {f: getattr(self, f) for f in _SAMPLING_FIELDS}
        d["stop"] = list(self.stop)
        return d


_SAMPLING_FIELDS = tuple(f.name for f in fields(Sampling))


@dataclass(frozen=True)
class OutputType:
    """A guided-decoding constraint: kind is "json" (spec = schema dict as JSON text), "choice"
    (spec = JSON list of strings) or "regex" (spec = the pattern)."""

    kind: str
    spec: str

    @property
    def value(self) -> Any:
        return json.loads(self.spec) if self.kind in ("json", "choice") else self.spec


@dataclass(frozen=True)
class Request:
    """What a strategy asks a backend for. `continuations` turns the request into a
    log-likelihood request: the backend scores each continuation after the prompt instead of generating.

    Two prompt formats: chat (`messages`, rendered with the model's chat template) and completion
    (`prompt`, one plain text sent as is, no template; `messages` is then empty)."""

    key: str
    messages: tuple[Message, ...]
    sampling: Sampling = field(default_factory=Sampling)
    output_type: OutputType | None = None
    continuations: tuple[str, ...] = ()
    prompt: str | None = None  # completion format: the plain-text prompt

    @property
    def format(self) -> str:
        return "chat" if self.prompt is None else "completion"


@dataclass(frozen=True)
class Completion:
    """What a backend returns for one request (n texts for n samples)."""

    texts: tuple[str, ...]
    prompt_tokens: int | None = None
    completion_tokens: tuple[int, ...] = ()
    finish_reasons: tuple[str | None, ...] = ()
    cumulative_logprobs: tuple[float | None, ...] = ()
    latency_s: float | None = None
    ttft_s: float | None = None
    itl_s: float | None = None  # mean inter-token latency (streaming backends)
    cached_prompt_tokens: int | None = None
    continuation_logprobs: tuple[float, ...] = ()  # for log-likelihood requests
    continuation_tokens: tuple[int, ...] = ()
    error: str | None = None
    cached: bool = False

    @staticmethod
    def failed(error: str, *, latency_s: float | None = None, prompt_tokens: int | None = None) -> "Completion":
        return Completion(texts=(), error=error, latency_s=latency_s, prompt_tokens=prompt_tokens)


@dataclass(frozen=True)
class Sample:
    """One generated sample of a request with n > 1, after extraction."""

    idx: int
    output: str
    answer: str | None
    parse_ok: bool
    completion_tokens: int | None
    cumulative_logprob: float | None
    finish_reason: str | None


@dataclass(frozen=True)
class Prediction:
    """A strategy's answer for one example. `extra` holds strategy-specific columns
    (votes, agreement, tie_rule, acc_norm, ...)."""

    output: str
    answer: str | None
    parse_ok: bool
    samples: tuple[Sample, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
