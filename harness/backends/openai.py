"""The OpenAI-compatible server backend: a vLLM server (`harness serve`) or the OpenAI API.

`OpenAIBackend.generate(requests)` puts every request on ONE shared asyncio queue; each base URL gets
`concurrency` workers (each with that endpoint's `AsyncOpenAI` client) taking from it, so a slow
endpoint simply takes less of the work (data parallelism over several servers). Responses are
streamed to measure time to first token and the inter-token latency.

Timing rule (per request, for the attempt that succeeded):
    latency_s = send -> last chunk of the stream
    ttft_s    = send -> first chunk carrying generated text (any sample)
    itl       = mean over samples of (last chunk - first text chunk) / (sample tokens - 1)
                (Completion.itl_s, also in `backend.last_itl[request.key]`)

Retry policy (ours; the client's own retries are off): 408, 409, 429, 5xx, timeouts and dropped
connections are retried up to `max_retries` times, after `backoff_base_s * 2**(attempt-1)` seconds
with jitter (x0.5..1.0), or after the server's Retry-After when it sends one. A retried request goes
back on the shared queue, so another endpoint may serve it. Other errors fail the row at once.

Token counts. vLLM servers (`structured="vllm"`) get `stream_options.continuous_usage_stats`, whose
per-chunk usage gives each sample's completion tokens exactly. Elsewhere the per-sample counts come
from the number of logprob entries when logprobs were asked for, else the total is split evenly
over the n samples (an approximation, marked nowhere else: prefer n=1 or logprobs there).
Cached prompt tokens come from usage.prompt_tokens_details.cached_tokens (vLLM sends them when
started with --enable-prompt-tokens-details, which `harness serve` does).
"""
from __future__ import annotations

import dataclasses

import asyncio
import os
import random
import time
from collections import Counter
from email.utils import parsedate_to_datetime
from typing import Any, Sequence
from urllib.parse import urlsplit

from ..errors import BackendError, ConfigError, EngineStartError, HarnessError
from ..records import Completion, OutputType, Request

RETRY_STATUS = frozenset({408, 409, 429})
MAX_RETRY_AFTER_S = 60.0
FIX_UNREACHABLE = "start a server with `harness serve` or check --base-url"


# --------------------------------------------------------------------------- pure translation

def constraint_kwargs(output_type: OutputType, structured: str) -> dict[str, Any]:
    """OutputType -> request fields. vLLM: {"extra_body": {"structured_outputs": {...}}} (via Outlines'
    vLLM-server adapter when available: a choice list becomes a regex, as in the offline backend);
    OpenAI: {"response_format": {"type": "json_schema", ...}}. Choice and regex raise ConfigError on
    the OpenAI API, which cannot constrain them.

    >>> constraint_kwargs(OutputType("choice", '["A", "B"]'), "vllm")["extra_body"]["structured_outputs"]
    {'regex': '(A|B)'}
    """
    kind, value = output_type.kind, output_type.value
    if kind not in ("json", "choice", "regex"):
        raise ConfigError(f"unknown output type kind '{kind}'", field="output_type",
                          fix="use 'json', 'choice' or 'regex'")
    if structured == "openai":
        if kind != "json":
            raise ConfigError(f"{kind} constraints are not supported on the OpenAI API (it only takes "
                              "JSON schemas)", field="output_type",
                              fix="use a vLLM server (--structured vllm), or guided=false")
        try:
            from outlines.models.openai import OpenAITypeAdapter
            from outlines.types import JsonSchema

            return OpenAITypeAdapter().format_output_type(JsonSchema(value))
        except ImportError:
            return {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": "output", "strict": True, "schema": value}}}
    try:
        from typing import Literal

        from outlines.models.vllm import VLLMTypeAdapter
        from outlines.types import JsonSchema, Regex

        term = {"json": lambda: JsonSchema(value), "regex": lambda: Regex(value),
                "choice": lambda: Literal[tuple(value)]}[kind]()
        so = VLLMTypeAdapter().format_output_type(term)["structured_outputs"]
    except (ImportError, TypeError, ValueError, KeyError):
        so = {kind: value}
    return {"extra_body": {"structured_outputs": so}}


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
    kwargs = {"model": model, "messages": [{"role": m.role, "content": m.content} for m in request.messages]}
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


def normalize_base_url(url: str) -> str:
    """'http://h:8000' -> 'http://h:8000/v1'; a URL with a path is kept (without a trailing '/')."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"not an http(s) URL: '{url}'", field="--base-url",
                          fix="give a URL like http://127.0.0.1:8000/v1")
    return url if parts.path not in ("", "/") else url + "/v1"


def run_sync(coro: Any) -> Any:
    """Run a coroutine from sync code, also when an event loop is already running (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# --------------------------------------------------------------------------- the backend

class OpenAIBackend:
    """One or more OpenAI-compatible endpoints.

    >>> backend = OpenAIBackend("http://127.0.0.1:8000/v1")  # doctest: +SKIP
    >>> backend.generate([Request("q1", (Message("user", "Hi"),))])  # doctest: +SKIP
    """

    preferred_chunk_size = 64  # requests per journaled chunk (the offline engine uses 512)

    name = "openai"

    def __init__(self, base_urls: list[str] | str, *, model: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 8, endpoint: str = "chat", timeout_s: float = 60, max_retries: int = 4,
                 backoff_base_s: float = 0.5, structured: str = "vllm", stream: bool = True) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ConfigError("no base URL given", field="--base-url", fix="give --base-url URL")
        self.base_urls = [normalize_base_url(u) for u in urls]
        if endpoint not in ("chat", "completions"):
            raise ConfigError(f"unknown endpoint '{endpoint}'", field="endpoint", fix="use 'chat' or 'completions'")
        if structured not in ("vllm", "openai"):
            raise ConfigError(f"unknown structured mode '{structured}'", field="structured",
                              fix="use 'vllm' (vLLM servers) or 'openai' (the OpenAI API)")
        if concurrency < 1 or max_retries < 0:
            raise ConfigError("concurrency must be >= 1 and max_retries >= 0", field="--concurrency",
                              fix="give a positive --concurrency")
        self.api_key_env = api_key_env
        self._api_key()  # fail early on a missing variable; the key itself is never kept on self
        self.endpoint, self.structured, self.stream = endpoint, structured, stream
        self.concurrency, self.timeout_s = int(concurrency), float(timeout_s)
        self.max_retries, self.backoff_base_s = int(max_retries), float(backoff_base_s)
        self.served_counts: Counter[str] = Counter()  # requests answered per endpoint (cumulative)
        self.last_itl: dict[str, float] = {}          # mean inter-token latency per request key (last call)
        self.last_attempts: dict[str, int] = {}       # attempts per request key (last call)
        models = self.check_reachable()
        ids = [m.get("id") for m in models if m.get("id")]
        if model is None and not ids:
            raise EngineStartError("the server lists no models", where=self.base_urls[0], field="--model",
                                   fix="pass --model NAME")
        self.model_name = model or ids[0]
        if ids and self.model_name not in ids and structured == "vllm":
            from ..errors import suggest

            raise ConfigError(f"the server does not serve '{self.model_name}'", where=self.base_urls[0],
                              field="--model", fix=suggest(self.model_name, ids))
        root = next((m.get("root") for m in models if m.get("id") == self.model_name), None)
        self.model_path: str | None = root if isinstance(root, str) and root else None

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.base_urls!r}, model={self.model_name!r}, endpoint={self.endpoint!r})"

    def engine_settings(self) -> dict[str, Any]:
        """For run.json: the variable NAME of the key, never its value."""
        return {"backend": "openai", "base_urls": list(self.base_urls), "model": self.model_name,
                "endpoint": self.endpoint, "concurrency": self.concurrency, "structured": self.structured,
                "stream": self.stream, "timeout_s": self.timeout_s, "max_retries": self.max_retries,
                "api_key_env": self.api_key_env}

    def _api_key(self) -> str:
        if self.api_key_env is None:
            return "EMPTY"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"the environment variable {self.api_key_env} is not set", field="--api-key-env",
                              fix=f"export {self.api_key_env}=... or drop --api-key-env")
        return key

    def check_reachable(self) -> list[dict[str, Any]]:
        """GET {base}/models on every endpoint; the first endpoint's model list."""
        import openai

        first: list[dict[str, Any]] | None = None
        key = self._api_key()
        for url in self.base_urls:
            client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=min(self.timeout_s, 10.0))
            try:
                data = [m.model_dump() for m in client.models.list().data]
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise EngineStartError(f"the server at {url} refused the API key (HTTP {exc.status_code})",
                                       where=url, fix="set --api-key-env to the variable holding a valid key") from None
            except openai.APIStatusError as exc:
                raise EngineStartError(f"GET {url}/models answered HTTP {exc.status_code}", where=url,
                                       fix=FIX_UNREACHABLE) from None
            except openai.APIConnectionError as exc:
                reason = exc.__cause__ or exc
                raise EngineStartError(f"cannot reach the server at {url}: {type(reason).__name__}: {reason}",
                                       where=url, fix=FIX_UNREACHABLE) from None
            except openai.APIError as exc:
                raise EngineStartError(f"GET {url}/models did not return an OpenAI model list: {exc}", where=url,
                                       fix=FIX_UNREACHABLE) from None
            finally:
                client.close()
            if first is None:
                first = data
        return first or []

    # ---- the protocol method
    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """One Completion per request, in order; never raises for one bad row."""
        if not requests:
            return []
        self.last_itl, self.last_attempts = {}, {}
        return run_sync(self._generate(list(requests)))

    async def _generate(self, requests: list[Request]) -> list[Completion]:
        from openai import AsyncOpenAI

        key = self._api_key()
        clients = [AsyncOpenAI(base_url=u, api_key=key, max_retries=0, timeout=self.timeout_s) for u in self.base_urls]
        results: list[Completion | None] = [None] * len(requests)
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        for i in range(len(requests)):
            queue.put_nowait((i, 1))
        loop = asyncio.get_running_loop()

        def requeue(item: tuple[int, int]) -> None:
            queue.put_nowait(item)
            queue.task_done()  # the failed attempt's slot; put_nowait came first, so join() cannot end early

        async def worker(ep: int) -> None:
            while True:
                i, attempt = await queue.get()
                req = requests[i]
                start = time.perf_counter()
                try:
                    comp = await self._attempt(clients[ep], self.base_urls[ep], req, start)
                except Exception as exc:  # noqa: BLE001 - every failure becomes this row's error (no blind retry)
                    text, retryable, wait = classify(exc)
                    if retryable and attempt <= self.max_retries:
                        loop.call_later(backoff_s(attempt, base=self.backoff_base_s, retry_after=wait),
                                        requeue, (i, attempt + 1))
                        continue
                    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                    comp = Completion.failed(f"{text}{tries} [{self.base_urls[ep]}]",
                                             latency_s=time.perf_counter() - start)
                results[i] = comp
                self.last_attempts[req.key] = attempt
                self.served_counts[self.base_urls[ep]] += 1
                queue.task_done()

        workers = [asyncio.create_task(worker(ep)) for ep in range(len(clients)) for _ in range(self.concurrency)]
        try:
            await queue.join()
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for c in clients:
                await c.close()
        return [r if r is not None else Completion.failed("no result") for r in results]

    # ---- one attempt of one request (raises; the worker applies the retry policy)
    async def _attempt(self, client: Any, base: str, req: Request, start: float) -> Completion:
        if req.continuations:
            return await self._loglikelihood(client, base, req, start)
        if req.sampling.beam_width > 0:
            return await self._beam(client, req, start)
        if self.endpoint == "chat":
            kwargs = to_chat_kwargs(req, self.model_name, self.structured, stream=self.stream)
            call = client.chat.completions.create
        else:
            prompt = await self._render(client, base, req)
            kwargs = to_completion_kwargs(req, self.model_name, self.structured, prompt=prompt, stream=self.stream)
            call = client.completions.create
        if not self.stream:
            return _from_response(await call(**kwargs), req, start)
        acc = _StreamAccumulator(req.sampling.n, start)
        async with await call(**kwargs) as stream:  # closes the connection on any exit
            async for chunk in stream:
                acc.add(chunk, time.perf_counter())
        comp, itl = acc.finish(time.perf_counter())
        if itl is not None:
            self.last_itl[req.key] = itl
            comp = dataclasses.replace(comp, itl_s=itl)
        return comp

    async def _render(self, client: Any, base: str, req: Request) -> str | list[int]:
        """The completions endpoint's prompt: vLLM renders the chat template (/tokenize); else plain text."""
        if self.structured != "vllm":
            return plain_prompt(req)
        return await self._chat_ids(client, base, req)

    async def _chat_ids(self, client: Any, base: str, req: Request) -> list[int]:
        """The chat-template-rendered prompt's token ids, from a vLLM server's /tokenize."""
        return await self._tokenize(client, base, {"messages": [{"role": m.role, "content": m.content}
                                                                for m in req.messages],
                                                   "add_generation_prompt": True})

    async def _tokenize(self, client: Any, base: str, body: dict[str, Any]) -> list[int]:
        root = base[: -len("/v1")] if base.endswith("/v1") else base
        body = {"model": self.model_name, "add_special_tokens": False, **body}
        out = await client.post(f"{root}/tokenize", body=body, cast_to=object)
        return list(out["tokens"])

    async def _loglikelihood(self, client: Any, base: str, req: Request, start: float) -> Completion:
        """vLLM only: chat-template token ids (+ each continuation's ids) scored with prompt_logprobs,
        the same token layout as the offline backend."""
        if self.structured != "vllm":
            raise BackendError("loglikelihood is not supported on the openai backend against the OpenAI API "
                               "(it needs a vLLM server's /tokenize and prompt_logprobs)")
        ids = await self._chat_ids(client, base, req)
        totals, lengths = [], []
        for cont in req.continuations:
            cids = await self._tokenize(client, base, {"prompt": cont})
            if not cids:
                raise BackendError("empty continuation: nothing to score")
            resp = await client.completions.create(model=self.model_name, prompt=ids + cids, max_tokens=1,
                                                   temperature=0.0, extra_body={"prompt_logprobs": 0})
            plp = (resp.choices[0].model_extra or {}).get("prompt_logprobs") or []
            total = 0.0
            for pos in range(len(ids), len(ids) + len(cids)):
                entry = plp[pos] if pos < len(plp) else None
                tok = (entry or {}).get(str((ids + cids)[pos]))
                total += float(tok["logprob"]) if tok else float("-inf")
            totals.append(total)
            lengths.append(len(cids))
        return Completion(texts=(), prompt_tokens=len(ids), continuation_logprobs=tuple(totals),
                          continuation_tokens=tuple(lengths), latency_s=time.perf_counter() - start)

    async def _beam(self, client: Any, req: Request, start: float) -> Completion:
        """vLLM only: `use_beam_search` with n = beam width, not streamed; the best beam is kept and
        cut at the first stop string (the server's beam search ignores `stop`)."""
        if self.structured != "vllm":
            raise BackendError("beam search is not supported on the OpenAI API (it needs a vLLM server)")
        if req.output_type is not None:
            raise BackendError("guided decoding with beam search is not supported by the vLLM server")
        s = req.sampling
        resp = await client.chat.completions.create(
            model=self.model_name, messages=[{"role": m.role, "content": m.content} for m in req.messages],
            n=s.beam_width, temperature=float(s.temperature), max_tokens=s.max_tokens,
            extra_body={"use_beam_search": True})
        best = min(resp.choices, key=lambda c: c.index)
        text = best.message.content or ""
        cuts = [text.find(x) for x in s.stop if x and x in text]
        finish = best.finish_reason
        if cuts:
            text, finish = text[:min(cuts)], "stop"
        usage = resp.usage
        per = round(usage.completion_tokens / max(len(resp.choices), 1)) if usage else None
        return Completion(texts=(text,), prompt_tokens=usage.prompt_tokens if usage else None,
                          completion_tokens=(per,) if per is not None else (), finish_reasons=(finish,),
                          latency_s=time.perf_counter() - start)


# --------------------------------------------------------------------------- response parsing

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
