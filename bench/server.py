"""P7: the OpenAI backend against a bare async `openai` loop, same server, same prompts and settings.

One vLLM server (`harness.backends.serve.serve()`, prefix caching off so that neither side profits from the
other's KV blocks) answers both: `OpenAIBackend(url, concurrency=C).generate(requests)` and a plain
asyncio loop that streams the same chat requests through `AsyncOpenAI` with a semaphore of C.
"""
from __future__ import annotations

import asyncio
from typing import Any

from .common import Clock, Row, abba, best, clock_ratio, clocked, requests_of
from .engine import P1_STRATEGIES, P1_TASKS

CONCURRENCY = 8


async def _bare(url: str, model: str, reqs: list[Any], concurrency: int) -> list[str]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=120)
    sem = asyncio.Semaphore(concurrency)

    async def one(r: Any) -> str:
        s = r.sampling
        kwargs: dict[str, Any] = {
            "model": model, "messages": [{"role": m.role, "content": m.content} for m in r.messages],
            "max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p, "seed": s.seed,
            "stream": True, "stream_options": {"include_usage": True}}
        if s.stop:
            kwargs["stop"] = list(s.stop)
        parts: list[str] = []
        async with sem:
            stream = await client.chat.completions.create(**kwargs)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
        return "".join(parts)

    try:
        return list(await asyncio.gather(*(one(r) for r in reqs)))
    finally:
        await client.close()


def run(*, quick: bool, log=print) -> list[Row]:
    from harness.backends.openai import OpenAIBackend
    from harness.backends.serve import serve

    reqs = requests_of(P1_TASKS, P1_STRATEGIES, limit=5 if quick else 20)
    log("[bench] P7: starting a vLLM server")
    handle = serve(extra_args=("--no-enable-prefix-caching",))
    try:
        backend = OpenAIBackend(handle.url, concurrency=CONCURRENCY, timeout_s=120)
        backend.generate(reqs[:CONCURRENCY])  # warm-up
        asyncio.run(_bare(handle.url, backend.model_name, reqs[:CONCURRENCY], CONCURRENCY))
        out: dict[str, list[str]] = {}

        def via_harness() -> Clock:
            t, comps = clocked(lambda: backend.generate(reqs))
            out["harness"] = [c.texts[0] if c.texts else "" for c in comps]
            errors = [c.error for c in comps if c.error]
            if errors:
                raise RuntimeError(f"P7: {len(errors)} failed requests, e.g. {errors[0]}")
            return t

        def bare() -> Clock:
            t, texts = clocked(lambda: asyncio.run(_bare(handle.url, backend.model_name, reqs, CONCURRENCY)))
            out["bare"] = texts
            return t

        th, tb = abba(via_harness, bare, reps=2 if quick else 3)
    finally:
        handle.stop()
    same = sum(a == b for a, b in zip(out["harness"], out["bare"])) / len(reqs)
    wall, cpu, detail = clock_ratio(th, tb)
    return [Row("P7", f"OpenAIBackend / bare async openai loop, wall, {len(reqs)} streamed requests, "
                f"concurrency {CONCURRENCY} (best of {len(th)}, alternating)", wall, "<= 1.10",
                detail={**detail, "identical_outputs": same},
                note=f"{best(th).wall:.2f} s vs {best(tb).wall:.2f} s; CPU ratio (client + server) {cpu:.3f}; "
                     f"identical outputs {same:.0%}")]
