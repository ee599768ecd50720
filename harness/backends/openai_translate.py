"""The OpenAI-compatible backend's pure translation: a Request -> the keyword arguments of the chat and
completions calls (no I/O, unit-testable without a server). Guided decoding comes from harness.backends.guided."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .guided import response_format, structured_outputs
from ..records import OutputType, Request
from .chat import to_chat_messages


def constraint_kwargs(output_type: OutputType, structured: str) -> dict[str, Any]:
    """OutputType -> request fields (harness.backends.guided does the translation). vLLM:
    {"extra_body": {"structured_outputs": {...}}} (a choice list becomes a regex, as in the offline
    backend); OpenAI: {"response_format": {"type": "json_schema", ...}}. Choice and regex raise
    ConfigError on the OpenAI API, which cannot constrain them.

    >>> constraint_kwargs(OutputType("choice", '["A", "B"]'), "vllm")["extra_body"]["structured_outputs"]
    {'regex': '(A|B)'}
    """
    if structured == "openai":
        return response_format(output_type)
    return {"extra_body": {"structured_outputs": structured_outputs(output_type)}}


def _wants_logprobs(request: Request) -> bool:
    return request.sampling.logprobs or request.sampling.n > 1


def _common(request: Request, structured: str, *, stream: bool) -> dict[str, Any]:
    s = request.sampling
    if structured not in ("vllm", "openai"):
        raise ConfigError(f"unknown structured mode '{structured}'", field="structured",
                          fix="use 'vllm' or 'openai'")
    kwargs: dict[str, Any] = {"n": s.n, "temperature": float(s.temperature), "top_p": float(s.top_p)}
    if s.seed is not None:
        kwargs["seed"] = s.seed
    if s.stop:
        kwargs["stop"] = list(s.stop)
    extra: dict[str, Any] = {}
    if structured == "vllm":
        extra["top_k"] = max(int(s.top_k), 0)  # sent even when off: a server default never leaks in
    elif s.top_k > 0:
        raise ConfigError("top_k is not supported on the OpenAI API", field="top_k",
                          fix="drop top_k from the strategy, or use a vLLM server")
    if stream:
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
        if structured == "vllm":
            kwargs["stream_options"]["continuous_usage_stats"] = True
    if request.output_type is not None:
        guided = constraint_kwargs(request.output_type, structured)
        extra.update(guided.pop("extra_body", {}))
        kwargs.update(guided)
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def to_chat_kwargs(request: Request, model: str, structured: str = "vllm", *, stream: bool = True) -> dict[str, Any]:
    """Request -> keyword arguments of `client.chat.completions.create`.

    >>> from harness.records import Message, Sampling
    >>> kw = to_chat_kwargs(Request("k", (Message("user", "Hi"),), Sampling(max_tokens=8)), "m")
    >>> kw["messages"], kw["max_tokens"], kw["extra_body"]
    ([{'role': 'user', 'content': 'Hi'}], 8, {'top_k': 0})
    """
    kwargs = {"model": model, "messages": to_chat_messages(request)}
    kwargs.update(_common(request, structured, stream=stream))
    # the OpenAI API renamed max_tokens (its reasoning models refuse the old name); vLLM takes both
    kwargs["max_tokens" if structured == "vllm" else "max_completion_tokens"] = request.sampling.max_tokens
    if _wants_logprobs(request):
        kwargs["logprobs"] = True
        kwargs["top_logprobs"] = 0
    return kwargs


def to_completion_kwargs(request: Request, model: str, structured: str = "vllm", *,
                         prompt: str | list[int], stream: bool = True) -> dict[str, Any]:
    """Request -> keyword arguments of `client.completions.create`, for an already rendered prompt
    (chat-template token ids from a vLLM server's /tokenize, or plain text)."""
    kwargs = {"model": model, "prompt": prompt, "max_tokens": request.sampling.max_tokens}
    kwargs.update(_common(request, structured, stream=stream))
    if _wants_logprobs(request):
        kwargs["logprobs"] = 0 if structured == "vllm" else 1
    return kwargs


def plain_prompt(request: Request) -> str:
    """Messages as plain text, for the completions endpoint of servers without a chat template."""
    return "\n\n".join(m.content for m in request.messages)


def normalize_base_url(url: str) -> str:
    """'http://h:8000' -> 'http://h:8000/v1'; a URL with a path is kept (without a trailing '/')."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"not an http(s) URL: '{url}'", field="--base-url",
                          fix="give a URL like http://127.0.0.1:8000/v1")
    return url if parts.path not in ("", "/") else url + "/v1"
