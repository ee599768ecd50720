"""The LangChain backend: any langchain-core `BaseChatModel` (ChatOpenAI, ChatAnthropic, ...).

    >>> from langchain_openai import ChatOpenAI                      # doctest: +SKIP
    >>> backend = LangChainBackend(ChatOpenAI(base_url=url, api_key="EMPTY", model="smol"))  # doctest: +SKIP
    >>> backend = LangChainBackend("my_models:chat")                 # doctest: +SKIP

Passing "module:attribute" IMPORTS that module (it runs its code): an explicit opt-in, the same trust
as running a script. The attribute is a chat model, or a callable with no arguments returning one.

Each request is one `ainvoke`; n > 1 becomes n calls with seeds seed, seed+1, ... (chat models have
no common `n`). All calls run through `abatch` with `max_concurrency=concurrency`; latency is measured
per call (for n > 1, the slowest of the n calls). Sampling settings (temperature, top_p, max_tokens,
seed, stop) that are fields of the model class (as in ChatOpenAI) are set on a copy of the model, so
they also reach structured output; others are bound as call keywords (plain generation only), and a
model that refuses one fails that row. Token counts come from `AIMessage.usage_metadata`
(input_tokens, output_tokens, input_token_details.cache_read). JSON output types use
`with_structured_output(schema, method="json_schema", include_raw=True)`; choice and regex
constraints, log-likelihood and beam search are not available through LangChain and fail the row
with a clear message. ttft_s is None (no streaming).
"""
from __future__ import annotations

import importlib
import json
import time
from dataclasses import replace
from typing import Any, Sequence

from ..errors import ConfigError
from .guided import json_schema, unsupported as guided_unsupported
from ..records import Completion, Request
from .base import BackendBase, identity_of
from .chat import run_sync


def load_chat_model(spec: str) -> Any:
    """'package.module:attribute' -> the chat model (calling the attribute if it is a factory)."""
    from langchain_core.language_models import BaseChatModel

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"'{spec}' is not of the form module:attribute", field="--langchain-model",
                          fix="write e.g. my_models:chat (a module on the path and a chat model in it)")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's module; report it in one line
        raise ConfigError(f"cannot import module '{module_name}': {type(exc).__name__}: {exc}", where=spec,
                          field="--langchain-model", fix="check the module name and that it imports") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module '{module_name}' has no attribute '{attr}'", where=spec,
                          field="--langchain-model", fix="name a chat model defined in that module") from None
    if not isinstance(obj, BaseChatModel) and callable(obj) and not isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, BaseChatModel):
        raise ConfigError(f"'{spec}' is a {type(obj).__name__}, not a langchain-core BaseChatModel",
                          field="--langchain-model", fix="point at a chat model instance or a factory returning one")
    return obj


def to_lc_messages(request: Request) -> list[Any]:
    """Request messages -> SystemMessage / HumanMessage / AIMessage."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    out = []
    for m in request.messages:
        if m.role not in kinds:
            raise ConfigError(f"unknown message role '{m.role}'", field="role", fix="use system, user or assistant")
        out.append(kinds[m.role](content=m.content))
    return out


def call_kwargs(request: Request) -> dict[str, Any]:
    """Sampling -> keywords bound to the chat model (as ChatOpenAI and most providers name them)."""
    s = request.sampling
    kw: dict[str, Any] = {"temperature": float(s.temperature), "max_tokens": s.max_tokens}
    if s.top_p != 1.0:
        kw["top_p"] = float(s.top_p)
    if s.seed is not None:
        kw["seed"] = s.seed
    return kw


def sample_request(request: Request, j: int) -> Request:
    """The j-th of n single calls: seed + j, so that seeded samples differ from each other."""
    s = request.sampling
    if s.n == 1 and j == 0:
        return request
    return replace(request, sampling=replace(s, n=1, seed=None if s.seed is None else s.seed + j))


def unsupported(request: Request) -> str | None:
    if request.continuations:
        return "loglikelihood is not supported on the langchain backend"
    if request.prompt is not None:
        return "the completion format is not supported on the langchain backend (it drives chat models)"
    if request.sampling.beam_width > 0:
        return "beam search is not supported on the langchain backend"
    if request.sampling.top_k > 0:
        return "top_k is not supported on the langchain backend"
    if request.output_type is not None:
        return guided_unsupported(request.output_type, "langchain")
    return None


class LangChainBackend(BackendBase):
    name = "langchain"
    preferred_chunk_size = 64  # requests per journaled chunk (the offline engine uses 512)

    def __init__(self, chat_model: Any, *, concurrency: int = 4, bind_sampling: bool = True) -> None:
        from langchain_core.language_models import BaseChatModel

        self.spec = chat_model if isinstance(chat_model, str) else None
        model = load_chat_model(chat_model) if isinstance(chat_model, str) else chat_model
        if not isinstance(model, BaseChatModel):
            raise ConfigError(f"a {type(model).__name__} is not a langchain-core BaseChatModel",
                              field="--langchain-model", fix="pass a chat model")
        if concurrency < 1:
            raise ConfigError("concurrency must be >= 1", field="--concurrency", fix="give a positive number")
        self.chat_model = model
        self.concurrency = int(concurrency)
        self.bind_sampling = bind_sampling
        self.model_name = str(getattr(model, "model_name", None) or getattr(model, "model", None)
                              or type(model).__name__)
        self.model_path = None
        self._loop: Any = None
        self._configured: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"LangChainBackend({type(self.chat_model).__name__}, model={self.model_name!r})"

    @classmethod
    def from_cli(cls, args: Any, *, model: str | None, engine_options: dict[str, Any]) -> "LangChainBackend":
        if args.langchain_model:
            return cls(args.langchain_model, concurrency=args.concurrency or 4)
        if args.base_url:  # langchain-openai's ChatOpenAI against an OpenAI-compatible server
            return cls(chat_openai(args.base_url[0], model=args.model, api_key_env=args.api_key_env),
                       concurrency=args.concurrency or 4)
        raise ConfigError("--backend langchain needs a model", field="--langchain-model",
                          fix="pass --langchain-model package.module:chat_model, or --base-url URL for ChatOpenAI")

    def identity(self) -> str:
        """The model name, the chat model's class and its endpoint: two providers (or two servers)
        serving a model of the same name do not share cached answers."""
        return identity_of(self, chat_model=self.engine_settings()["chat_model"], base_url=self.base_url())

    def base_url(self) -> str | None:
        """The endpoint of the chat model, where it has one (ChatOpenAI: openai_api_base)."""
        for attr in ("openai_api_base", "base_url", "api_base", "endpoint_url"):
            value = getattr(self.chat_model, attr, None)
            if isinstance(value, str) and value:
                return value
        return None

    def engine_settings(self) -> dict[str, Any]:
        cls = type(self.chat_model)
        return {"backend": "langchain", "chat_model": f"{cls.__module__}.{cls.__qualname__}",
                "spec": self.spec, "model": self.model_name, "concurrency": self.concurrency}

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """One Completion per request, in order; never raises for one bad row."""
        if not requests:
            return []
        return self._run(self._generate(list(requests)))

    def _run(self, coro: Any) -> Any:
        """Run on the backend's own event loop, kept across calls: providers' async HTTP clients are
        cached and bound to the loop that first used them."""
        import asyncio

        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return run_sync(coro, loop=self._loop)

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.close()

    def _runnable(self, request: Request) -> Any:
        """The chat model configured for this request. Sampling keywords that are fields of the model
        class (ChatOpenAI: temperature, max_tokens, top_p, seed, stop) go into a copy of the model, so
        that they also reach `with_structured_output`; others are bound as call keywords (plain
        generation only)."""
        kw = call_kwargs(request) if self.bind_sampling else {}
        if request.sampling.stop:
            kw["stop"] = list(request.sampling.stop)
        cache_key = (json.dumps(kw, sort_keys=True), request.output_type)
        if cache_key in self._configured:
            return self._configured[cache_key]
        fields = getattr(type(self.chat_model), "model_fields", {})
        update = {k: v for k, v in kw.items() if k in fields}
        rest = {k: v for k, v in kw.items() if k not in fields}
        model = self.chat_model.model_copy(update=update) if update else self.chat_model
        if request.output_type is not None:
            schema = json_schema(request.output_type, "langchain")
            runnable = model.with_structured_output(schema, method="json_schema", include_raw=True)
        else:
            runnable = model.bind(**rest) if rest else model
        self._configured[cache_key] = runnable
        return runnable

    async def _generate(self, requests: list[Request]) -> list[Completion]:
        from langchain_core.runnables import RunnableLambda

        calls: list[tuple[int, Any, list[Any]]] = []
        results: list[Completion | None] = [None] * len(requests)
        for i, req in enumerate(requests):
            reason = unsupported(req)
            if reason:
                results[i] = Completion.failed(reason)
                continue
            try:
                messages = to_lc_messages(req)
                runnables = [self._runnable(sample_request(req, j)) for j in range(req.sampling.n)]
            except Exception as exc:  # noqa: BLE001 - e.g. NotImplementedError from with_structured_output
                results[i] = Completion.failed(f"{type(exc).__name__}: {exc}")
                continue
            calls.extend((i, runnable, messages) for runnable in runnables)

        async def timed(item: tuple[int, Any, list[Any]]) -> tuple[Any, float]:
            _, runnable, messages = item
            start = time.perf_counter()
            out = await runnable.ainvoke(messages)
            return out, time.perf_counter() - start

        outs = await RunnableLambda(timed).abatch(calls, config={"max_concurrency": self.concurrency},
                                                  return_exceptions=True)
        grouped: dict[int, list[Any]] = {}
        for (i, *_), out in zip(calls, outs):
            grouped.setdefault(i, []).append(out)
        for i, outs_i in grouped.items():
            results[i] = _to_completion(outs_i)
        return [r if r is not None else Completion.failed("no result") for r in results]


def _to_completion(outs: list[Any]) -> Completion:
    errors = [o for o in outs if isinstance(o, BaseException)]
    if errors:
        exc = errors[0]
        return Completion.failed(" ".join(f"{type(exc).__name__}: {exc}".split())[:500])
    texts, ptoks, ctoks, cached, reasons, latencies = [], None, [], None, [], []
    for out, latency in outs:
        latencies.append(latency)
        msg, parsed = (out.get("raw"), out.get("parsed")) if isinstance(out, dict) else (out, None)
        text = msg.content if isinstance(getattr(msg, "content", None), str) else ""
        if not text and parsed is not None:  # tool-calling providers leave content empty
            text = json.dumps(parsed.model_dump() if hasattr(parsed, "model_dump") else parsed)
        texts.append(text)
        usage = getattr(msg, "usage_metadata", None) or {}
        if usage:
            ptoks = usage.get("input_tokens", ptoks)
            ctoks.append(usage.get("output_tokens"))
            hit = (usage.get("input_token_details") or {}).get("cache_read")
            cached = hit if hit is not None else cached
        meta = getattr(msg, "response_metadata", None) or {}
        reasons.append(meta.get("finish_reason") or meta.get("stop_reason"))
    counts = tuple(ctoks) if len(ctoks) == len(texts) and all(c is not None for c in ctoks) else ()
    return Completion(texts=tuple(texts), prompt_tokens=ptoks, completion_tokens=counts,
                      finish_reasons=tuple(reasons), latency_s=max(latencies), cached_prompt_tokens=cached)


def chat_openai(base_url: str, *, model: str | None, api_key_env: str | None) -> Any:
    """ChatOpenAI on `base_url`, model `model` or the server's first model."""
    import os

    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise ConfigError("langchain-openai is not installed", field="--backend",
                          fix="pip install langchain-openai (or 'harness[test]')") from None
    from .openai import OpenAIBackend

    probe = OpenAIBackend([base_url], model=model, api_key_env=api_key_env)  # reachability + model name
    key = os.environ.get(api_key_env, "") if api_key_env else "EMPTY"
    return ChatOpenAI(base_url=base_url, api_key=key or "EMPTY", model=probe.model_name, temperature=0,
                      max_retries=2)
