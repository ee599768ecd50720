"""Benchmarks on the real vLLM engine (the bundled SmolLM2-135M-Instruct, CPU build).

P1      harness.run wall time / raw `LLM.chat` on the same rendered prompts and settings, same engine
P2      self-consistency k=8: prompt tokens computed / (examples x prompt length), short and long prompt;
        n=k vs k cloned n=1 requests (issue 3): prompt tokens computed and wall time
P3      5-shot: prefix-cache hit rate with caching on; wall time caching on / off (two engines);
        the shared exemplar prefix is checked to be byte-identical across examples
P4      guided / free time per output token on the same items (JSON schema; regex), with the default
        structured-output backend (xgrammar) and, in the full run, with guidance (llguidance)
SPEC    n-gram speculative decoding / off on the same greedy items; identical outputs
B128    block_size=128 (vLLM's own default) instead of the harness's CPU default 32: P2 and P3 again
COMPILE compiled (torch.compile) / eager on the P1 prompts
CTX     the context-length sweep (tasks needle_256 ... needle_1800), one length per engine call

Every measurement that could reuse an earlier one's KV blocks starts from an empty prefix cache
(`LLM.reset_prefix_cache()`). Timed pairs alternate (a b, b a, ...) and keep the best of each side.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import engine_decode, engine_prefix
from .common import (Clock, Row, Settings, Timed, abba, best, clock_ratio, clocked, engine, fresh_prefix_cache,
                     ratio, requests_of, timed, vllm_params, wall_text)

P1_TASKS = ("coin_flip", "multistep_arithmetic")
P1_STRATEGIES = ("zero_shot", "few_shot:k=3")


@dataclass(frozen=True)
class RawBaseline:
    """P1's raw `LLM.chat` on the P1 prompts, which COMPILE compares the compiled engine with."""

    reqs: list[Any]
    convs: list[Any]
    params: list[Any]
    clocks: list[Clock]
    texts: dict[str, str]


# ------------------------------------------------------------------ P1
def p1(s: Settings, backend: Any) -> tuple[list[Row], RawBaseline]:
    import harness
    from harness.backends.chat import to_chat_messages

    limit = 10 if s.quick else 40
    reqs = requests_of(P1_TASKS, P1_STRATEGIES, limit=limit)
    convs = [to_chat_messages(r) for r in reqs]
    params = [vllm_params(r) for r in reqs]
    backend.llm.chat(convs[:8], params[:8], use_tqdm=False)  # warm-up
    raw_texts: dict[str, str] = {}
    frames: list[Any] = []

    def raw() -> Clock:
        fresh_prefix_cache(backend)
        clock, outs = clocked(lambda: backend.llm.chat(convs, params, use_tqdm=False))
        raw_texts.update({r.key: o.outputs[0].text for r, o in zip(reqs, outs)})
        return clock

    def via_harness() -> Clock:
        fresh_prefix_cache(backend)
        clock, df = clocked(lambda: harness.run(list(P1_TASKS), list(P1_STRATEGIES), backend=backend,
                                                limit=limit, out=s.out("p1"), progress=False,
                                                report=False, cache=False, latency_probe=0,
                                                split_groups=False))
        frames.append(df)
        return clock

    th, tr = abba(via_harness, raw, reps=s.reps)
    wall, cpu, detail = clock_ratio(th, tr)
    df = frames[-1]
    got = {f"{t}|{st}|{e}": o for t, st, e, o in zip(df["task"], df["strategy"], df["example_id"], df["output"])}
    same = sum(got.get(k) == v for k, v in raw_texts.items()) / len(raw_texts)
    baseline = RawBaseline(reqs, convs, params, tr, raw_texts)
    rows = [Row("P1", f"harness.run / raw LLM.chat, wall, {len(reqs)} requests (best of {s.reps}, "
                "alternating)", wall, "<= 1.05",
                detail={**detail, "requests": len(reqs), "identical_outputs": same},
                note=f"harness {wall_text(th)}, raw {wall_text(tr)}; CPU ratio {cpu:.3f}; identical outputs {same:.0%}")]
    # the same run as the CLI does it by default: with the HTML/Markdown report
    fresh_prefix_cache(backend)
    t, _ = timed(lambda: harness.run(list(P1_TASKS), list(P1_STRATEGIES), backend=backend, limit=limit,
                                     out=s.out("p1r"), progress=False, report=True, cache=False, latency_probe=0,
                                     split_groups=False))
    rows.append(Row("P1r", "harness.run with report=True / raw LLM.chat, wall", ratio(t, best(tr).wall),
                    None, detail={"harness_report_s": t}, note=f"{t:.2f} s incl. the report with plots"))
    return rows, baseline


# ------------------------------------------------------------------ COMPILE
def compile_rows(s: Settings, backend: Any, start_s: float, baseline: RawBaseline, start_eager_s: float) -> list[Row]:
    convs, params, reqs = baseline.convs, baseline.params, baseline.reqs
    backend.llm.chat(convs[:8], params[:8], use_tqdm=False)
    clocks, outs = [], None
    for _ in range(s.reps):
        fresh_prefix_cache(backend)
        clock, outs = clocked(lambda: backend.llm.chat(convs, params, use_tqdm=False))
        clocks.append(clock)
    same = sum(o.outputs[0].text == baseline.texts[r.key] for r, o in zip(reqs, outs)) / len(reqs)
    wall, cpu, detail = clock_ratio(clocks, baseline.clocks)
    return [Row("COMPILE", f"compiled / eager raw LLM.chat, wall, P1 prompts (best of {s.reps})", wall, None,
                detail={**detail, "identical": same, "start_compiled_s": start_s, "start_eager_s": start_eager_s},
                note=f"CPU ratio {cpu:.3f}; engine start {start_s:.0f} s vs {start_eager_s:.0f} s eager; "
                     f"identical outputs {same:.0%}")]


def run(*, quick: bool, only: set[str], folder: Path, log=print) -> list[Row]:
    """The engine benchmarks, one engine at a time (2 cores: never two at once). Each benchmark returns
    its rows and, where a later one compares with it, its measurements (passed on explicitly)."""
    s = Settings(quick=quick, folder=folder)
    rows: list[Row] = []
    want = lambda *ids: any(i in only for i in ids)  # noqa: E731
    baseline: RawBaseline | None = None
    p3_on: dict[str, Timed] = {}
    p3_off: dict[str, Timed] = {}
    spec_off: Timed | None = None
    start_eager_s = 0.0

    def with_engine(label: str, fn, **options) -> None:
        log(f"[bench] starting engine: {label}")
        t, backend = timed(lambda: engine(**options))
        try:
            fn(backend, t)
        finally:
            backend.close()

    def main_engine(backend: Any, start_s: float) -> None:
        nonlocal baseline, p3_on, spec_off, start_eager_s
        start_eager_s = start_s
        if want("P1", "COMPILE"):
            log("[bench] P1")
            p1_rows, baseline = p1(s, backend)
            rows.extend(p1_rows)
        if want("P2"):
            log("[bench] P2")
            rows.extend(engine_prefix.p2(s, backend))
        if want("P3"):
            log("[bench] P3 (caching on)")
            rows.extend(engine_prefix.p3_prefix_check(s, backend))
            p3_on = engine_prefix.p3_run(s, backend)
        if want("P4"):
            log("[bench] P4")
            rows.extend(engine_decode.p4(s, backend))
        if want("SPEC"):
            log("[bench] SPEC (baseline)")
            spec_off = engine_decode.spec_run(s, backend)
        if want("CTX") and not quick:
            log("[bench] CTX")
            rows.extend(engine_decode.ctx(s, backend))
        if want("PROBE"):
            from . import measures
            log("[bench] PROBE")
            rows.extend(measures.run(backend, quick=quick, out=s.out))

    def b128(backend: Any, _: float) -> None:
        rows.extend(engine_prefix.p2(s, backend, tag="B128-P2"))
        rows.extend(engine_prefix.p3_rows(s, engine_prefix.p3_run(s, backend), p3_off, tag="B128-P3"))

    if want("P1", "P2", "P3", "P4", "SPEC", "COMPILE", "CTX", "PROBE"):
        with_engine("default (eager, prefix caching on, block 32 on CPU)", main_engine)
    if want("P3"):
        with_engine("prefix caching off", lambda b, _: p3_off.update(engine_prefix.p3_run(s, b)),
                    enable_prefix_caching=False)
        rows.extend(engine_prefix.p3_rows(s, p3_on, p3_off))
    if want("P4") and not quick:
        with_engine("structured outputs: guidance (llguidance)",
                    lambda b, _: rows.extend(engine_decode.p4(s, b, tag="P4-guidance")),
                    structured_outputs_backend="guidance")
    if want("B128") and not quick:
        with_engine("block_size=128", b128, block_size=128)
    if want("SPEC"):
        on: list[Timed] = []
        with_engine("speculative n-gram k=3", lambda b, _: on.append(engine_decode.spec_run(s, b)), speculative_ngram=3)
        if on and spec_off is not None:
            rows.extend(engine_decode.spec_rows(s, on[0], spec_off))
    if want("COMPILE") and not quick and baseline is not None:
        with_engine("compiled (enforce_eager=False)",
                    lambda b, t: rows.extend(compile_rows(s, b, t, baseline, start_eager_s)), enforce_eager=False)
    return rows
