"""Prefix and KV reuse on the real engine: P2 (self-consistency n=k vs k clones) and P3 (5-shot prefix
caching: hit rate, byte-identical exemplar block, wall time caching on / off). See bench/engine.py."""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Sequence

from .common import (Clock, Row, Settings, Timed, abba, clock_ratio, clocked, fresh_prefix_cache, ratio,
                     requests_of, stats_delta, wall_text)

SC_SHORT = "self_consistency:k=8,base=zero_shot"            # coin_flip: ~86 prompt tokens (< one block)
SC_LONG = "self_consistency:k=8,base=zero_shot,shots=16"    # coin_flip: ~714 prompt tokens
P3_RUNS = (("multistep_arithmetic", "few_shot:k=5"),         # the 5-shot run of the brief (~200 tokens)
           ("last_letter_concat", "cot:k=5"))                # a longer 5-shot prompt (~420 tokens)


def _clones(req: Any) -> list[Any]:
    """k separate n=1 requests with different seeds: what a harness without n=k would send."""
    base = req.sampling.seed or 0
    return [replace(req, key=f"{req.key}#{i}", sampling=replace(req.sampling, n=1, seed=base + i))
            for i in range(req.sampling.n)]


def _computed(backend: Any, groups: Sequence[Sequence[Any]]) -> dict[str, float]:
    """Prompt tokens per group, each group from an empty prefix cache (no sharing between groups)."""
    tot = {"computed": 0.0, "prompt_tokens_counter": 0.0, "prompt_len": 0.0, "gen_tokens": 0.0}
    for reqs in groups:
        fresh_prefix_cache(backend)
        before = backend.stats()
        comps = backend.generate(list(reqs))
        d = stats_delta(before, backend.stats())
        tot["computed"] += d.get("prompt_tokens_computed", 0)
        tot["prompt_tokens_counter"] += d.get("prompt_tokens", 0)
        tot["gen_tokens"] += d.get("generation_tokens", 0)
        tot["prompt_len"] += comps[0].prompt_tokens or 0
    return tot


def p2(s: Settings, backend: Any, *, tag: str = "P2") -> list[Row]:
    examples = 2 if s.quick else 8
    rows = []
    for label, strategy in (("short", SC_SHORT), ("long", SC_LONG)):
        reqs = requests_of(["coin_flip"], [strategy], limit=examples)
        k = reqs[0].sampling.n
        nk = _computed(backend, [[r] for r in reqs])
        one = _computed(backend, [[replace(r, sampling=replace(r.sampling, n=1))] for r in reqs])
        cl = _computed(backend, [_clones(r) for r in reqs])
        plen = nk["prompt_len"] / len(reqs)
        rows.append(Row(f"{tag}-{label}", f"SC k={k}, {label} prompt ({plen:.0f} tok): prompt tokens computed "
                        "/ (examples x prompt length)", nk["computed"] / nk["prompt_len"], "<= 1.1",
                        detail={"n_k": nk, "n_1": one, "clones": cl, "examples": len(reqs)},
                        note=f"n=1: {one['computed'] / one['prompt_len']:.2f}; "
                             f"k clones: {cl['computed'] / cl['prompt_len']:.2f}"))
        if tag != "P2":
            continue
        rows.append(Row(f"P2-clones-{label}", f"SC k={k}, {label}: prompt tokens computed, k clones / n=k",
                        ratio(cl["computed"], nk["computed"]), None,
                        note=f"{cl['computed']:.0f} vs {nk['computed']:.0f} tokens"))
        clones = [c for r in reqs for c in _clones(r)]  # batched as the runner sends them
        gen: dict[str, float] = {}
        texts: dict[str, list[str]] = {}

        def run(name: str, batch: list[Any]) -> Clock:
            fresh_prefix_cache(backend)
            before = backend.stats()
            clock, comps = clocked(lambda: backend.generate(batch))
            gen[name] = stats_delta(before, backend.stats()).get("generation_tokens", 0)
            texts[name] = [t for c in comps for t in c.texts]
            return clock

        tn, tc = abba(lambda: run("n_k", reqs), lambda: run("clones", clones), reps=s.reps)
        wall, cpu, detail = clock_ratio(tn, tc)
        same = sum(a == b for a, b in zip(texts["n_k"], texts["clones"])) / len(texts["n_k"])
        rows.append(Row(f"P2-wall-{label}", f"SC k={k}, {label}: wall n=k / k clones ({len(reqs)} examples, "
                        "one batch)", wall, None, detail={**detail, "gen_tokens": gen, "identical_samples": same},
                        note=f"{wall_text(tn)} vs {wall_text(tc)}; CPU ratio {cpu:.3f}; generated "
                             f"{gen.get('n_k', 0):.0f} vs {gen.get('clones', 0):.0f} tokens; clone i (seed s+i) "
                             f"= sample i of n=k for {same:.0%} of samples"))
    return rows


def p3_prefix_check(s: Settings, backend: Any) -> list[Row]:
    """The exemplar block (everything before the item) is byte-identical across examples."""
    from harness.backends.chat import to_chat_messages
    from harness.strategy.prompt_layout import COT_TRIGGER

    tok = backend.tokenizer
    rows = []
    for task, strategy in P3_RUNS:
        reqs = requests_of([task], [strategy], limit=10 if s.quick else 40)
        trigger = f"\n\n{COT_TRIGGER}"  # cot ends the item with it; the item itself follows the last "\n\n"
        heads = {r.messages[-1].content.removesuffix(trigger).rsplit("\n\n", 1)[0] for r in reqs}
        systems = {tuple((m.role, m.content) for m in r.messages[:-1]) for r in reqs}
        texts = [tok.apply_chat_template(to_chat_messages(r),
                                         add_generation_prompt=True, tokenize=False) for r in reqs]
        ids = [list(tok.encode(t, add_special_tokens=False)) for t in texts]
        shared = len(os.path.commonprefix(ids))
        mean_len = sum(map(len, ids)) / len(ids)
        identical = len(heads) == 1 and len(systems) == 1 and len(set(texts)) == len(texts)
        rows.append(Row(f"P3-prefix-{task}", f"{task} {strategy}: shared prefix tokens / prompt tokens",
                        shared / mean_len, None,
                        detail={"byte_identical": identical, "shared_tokens": shared, "mean_prompt": mean_len,
                                "shared_chars": len(os.path.commonprefix(texts))},
                        note=f"exemplar block byte-identical across {len(reqs)} examples: {identical}; "
                             f"{shared} of {mean_len:.0f} tokens shared"))
    return rows


def p3_run(s: Settings, backend: Any) -> dict[str, Timed]:
    """Each 5-shot run `reps` times from an empty prefix cache: per task, the clocks and the hit rate."""
    import harness

    limit = 10 if s.quick else 40
    out: dict[str, Timed] = {}
    for task, strategy in P3_RUNS:
        clocks, rate = [], None
        for _ in range(s.reps):
            fresh_prefix_cache(backend)
            before = backend.stats()
            clock, _ = clocked(lambda: harness.run([task], [strategy], backend=backend, limit=limit,
                                                   out=s.out("p3"), progress=False, write_report=False,
                                                   cache=False, latency_probe=0))
            d = stats_delta(before, backend.stats())
            clocks.append(clock)
            q = d.get("prefix_cache_queries", 0)
            rate = d.get("prefix_cache_hits", 0) / q if q else None
        out[task] = Timed(clocks, hit_rate=rate)
    return out


def p3_rows(s: Settings, on: dict[str, Timed], off: dict[str, Timed] | None, *, tag: str = "P3") -> list[Row]:
    """The hit rate of each run with caching on, and (given `off`) the wall time on / off."""
    rows = []
    for task, strategy in P3_RUNS:
        m_on, m_off = on.get(task), (off or {}).get(task)
        if m_on is None:
            continue
        rows.append(Row(f"{tag}-hit-{task}", f"{task} {strategy}: prefix-cache hit rate (hits/queries)",
                        m_on.hit_rate, ">= 0.8"))
        if m_off is not None:
            wall, cpu, detail = clock_ratio(m_on.clocks, m_off.clocks)
            rows.append(Row(f"{tag}-wall-{task}", f"{task} {strategy}: wall caching on / off "
                            f"(best of {s.reps} each)", wall, "<= 0.5", detail=detail,
                            note=f"{wall_text(m_on.clocks)} vs {wall_text(m_off.clocks)}; CPU ratio {cpu:.3f}"))
    return rows
