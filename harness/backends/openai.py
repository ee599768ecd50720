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

The pure parts live beside this file: openai_translate.py (Request -> call arguments),
openai_retry.py (what is retried, after how long) and openai_stream.py (responses -> Completion).
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections import Counter
from typing import Any, Sequence

from ..errors import BackendError, ConfigError, EngineStartError
from ..records import Completion, Request
from .base import BackendBase
from .chat import cut_at_stop, message_dicts, run_sync
from .openai_retry import MAX_RETRY_AFTER_S, RETRY_STATUS, backoff_s, classify, retry_after_s
from .openai_stream import _from_response, _StreamAccumulator
from .openai_translate import (constraint_kwargs, normalize_base_url, plain_prompt, to_chat_kwargs,
                               to_completion_kwargs)

FIX_UNREACHABLE = "start a server with `harness serve` or check --base-url"
# names kept importable from here (the module was split: translation, retries, stream parsing)
__all__ = ["OpenAIBackend", "MAX_RETRY_AFTER_S", "RETRY_STATUS", "backoff_s", "classify", "constraint_kwargs",
           "normalize_base_url", "plain_prompt", "retry_after_s", "run_sync", "to_chat_kwargs", "to_completion_kwargs"]


# --------------------------------------------------------------------------- the backend

class OpenAIBackend(BackendBase):
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

    @classmethod
    def from_cli(cls, args: Any, *, model: str | None, engine_options: dict[str, Any]) -> "OpenAIBackend":
        """The served model is --model itself (None: the server's first model), never the model folder
        a resumed run recorded (`model`), which a server does not know by that name."""
        if not args.base_url:
            raise ConfigError("--backend openai needs a server", field="--base-url",
                              fix="pass --base-url http://127.0.0.1:PORT/v1 (start one with `harness serve`)")
        kw: dict[str, Any] = {"model": args.model, "api_key_env": args.api_key_env, "concurrency": args.concurrency or 8,
                              "endpoint": args.endpoint, "structured": args.structured}
        if args.request_timeout:
            kw["timeout_s"] = args.request_timeout
        if args.max_retries is not None:
            kw["max_retries"] = args.max_retries
        return cls(args.base_url, **kw)

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
        if req.prompt is not None:  # completion format: the plain text on the completions endpoint
            kwargs = to_completion_kwargs(req, self.model_name, self.structured, prompt=req.prompt, stream=self.stream)
            call = client.completions.create
        elif self.endpoint == "chat":
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
        return await self._tokenize(client, base, {"messages": message_dicts(req.messages),
                                                   "add_generation_prompt": True})

    async def _tokenize(self, client: Any, base: str, body: dict[str, Any]) -> list[int]:
        root = base[: -len("/v1")] if base.endswith("/v1") else base
        body = {"model": self.model_name, "add_special_tokens": False, **body}  # body may override
        out = await client.post(f"{root}/tokenize", body=body, cast_to=object)
        return list(out["tokens"])

    async def _loglikelihood(self, client: Any, base: str, req: Request, start: float) -> Completion:
        """vLLM only: the same token layout as the offline backend (chat: chat-template ids + each
        continuation's own ids; completion: lm-evaluation-harness's pair encoding, `encode_pair`),
        scored with prompt_logprobs. The server offers no `skip_reading_prefix_cache`, so each pair is
        computed in full (the plain way; exact, without the offline engine's prefix reuse)."""
        if self.structured != "vllm":
            raise BackendError("loglikelihood is not supported on the openai backend against the OpenAI API "
                               "(it needs a vLLM server's /tokenize and prompt_logprobs)")
        if req.prompt is not None:
            return await self._loglikelihood_text(client, req, base, start)
        ids = await self._chat_ids(client, base, req)
        totals, lengths = [], []
        for cont in req.continuations:
            cids = await self._tokenize(client, base, {"prompt": cont})
            totals.append(await self._continuation_logprob(client, ids, cids))
            lengths.append(len(cids))
        return Completion(texts=(), prompt_tokens=len(ids), continuation_logprobs=tuple(totals),
                          continuation_tokens=tuple(lengths), latency_s=time.perf_counter() - start)

    async def _loglikelihood_text(self, client: Any, req: Request, base: str, start: float) -> Completion:
        """Completion format on a vLLM server: /tokenize with the tokenizer's own special tokens."""
        from .loglik import pair_texts

        totals, lengths, n_ctx = [], [], 0
        for cont in req.continuations:
            ctx_text, whole_text = pair_texts(req.prompt, cont)
            ctx = await self._tokenize(client, base, {"prompt": ctx_text, "add_special_tokens": True})
            whole = await self._tokenize(client, base, {"prompt": whole_text, "add_special_tokens": True})
            totals.append(await self._continuation_logprob(client, ctx, whole[len(ctx):]))
            lengths.append(len(whole) - len(ctx))
            n_ctx = len(ctx)
        return Completion(texts=(), prompt_tokens=n_ctx, continuation_logprobs=tuple(totals),
                          continuation_tokens=tuple(lengths), latency_s=time.perf_counter() - start)

    async def _continuation_logprob(self, client: Any, ctx: list[int], cont: list[int]) -> float:
        """Summed prompt_logprobs of `cont` after `ctx` (one completions request, max_tokens=1)."""
        if not cont:
            raise BackendError("empty continuation: nothing to score")
        ids = ctx + cont
        resp = await client.completions.create(model=self.model_name, prompt=ids, max_tokens=1,
                                               temperature=0.0, extra_body={"prompt_logprobs": 0})
        plp = (resp.choices[0].model_extra or {}).get("prompt_logprobs") or []
        total = 0.0
        for pos in range(len(ctx), len(ids)):
            entry = plp[pos] if pos < len(plp) else None
            tok = (entry or {}).get(str(ids[pos]))
            total += float(tok["logprob"]) if tok else float("-inf")
        return total

    async def _beam(self, client: Any, req: Request, start: float) -> Completion:
        """vLLM only: `use_beam_search` with n = beam width, not streamed; the best beam is kept and
        cut at the first stop string (the server's beam search ignores `stop`)."""
        if self.structured != "vllm":
            raise BackendError("beam search is not supported on the OpenAI API (it needs a vLLM server)")
        if req.output_type is not None:
            raise BackendError("guided decoding with beam search is not supported by the vLLM server")
        s = req.sampling
        resp = await client.chat.completions.create(
            model=self.model_name, messages=message_dicts(req.messages),
            n=s.beam_width, temperature=float(s.temperature), max_tokens=s.max_tokens,
            extra_body={"use_beam_search": True})
        best = min(resp.choices, key=lambda c: c.index)
        text = best.message.content or ""
        text, stopped = cut_at_stop(text, s.stop)
        finish = "stop" if stopped else best.finish_reason
        usage = resp.usage
        per = round(usage.completion_tokens / max(len(resp.choices), 1)) if usage else None
        return Completion(texts=(text,), prompt_tokens=usage.prompt_tokens if usage else None,
                          completion_tokens=(per,) if per is not None else (), finish_reasons=(finish,),
                          latency_s=time.perf_counter() - start)


