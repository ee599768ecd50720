"""The single-request latency probe: what one user of a prompt would wait for (docs/measures.md).

After the batch, the first N items of every (task, strategy) group are sent to the same engine
`concurrency` at a time (default one at a time), never through the request cache. The groups take
turns (item 0 of every group, then item 1, ...) so a change in the machine's load during the probe
falls on every strategy alike. On the offline vLLM engine the prefix cache is emptied before each
call, so every probe request pays its whole prompt: the figure does not depend on which batch mates
ran before (the worst case for a shared few-shot prefix; a busy server that keeps it cached does better).
One discarded warm-up request goes first, so the first group does not pay for a cold engine.

Each probe row (probe.jsonl -> probes.parquet, flagged `probe = true`, never scored) holds:
    latency_s  end-to-end: the engine's arrival -> last token (vLLM metrics; the client's send -> last
               chunk on a server), else the call's wall time
    ttft_s     arrival (send) -> first token
    tpot_s     time per output token after the first: (latency_s - ttft_s) / (completion_tokens - 1)
    wall_s     the client's wall time around the whole call (an independent upper bound of latency_s, up to
               a few ms of clock skew between vLLM's frontend and engine-core processes)
A unit with several requests sends them together; its latency is the slowest, its TTFT the first.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

from ..errors import ConfigError
from ..records import Completion

# Per (task, strategy). Measured on 2 CPU cores (docs/measures.md): one probe item costs about as much as
# its whole group's batched call (a decode step takes nearly the same time for 1 or 50 sequences), so
# every item per group adds roughly 0.4-0.7x the batch's wall time. Off by default for that reason (the
# default single-request figure is the calibrated estimate of harness/runs/latency_model.py); opt in with N >= 1.
DEFAULT_PROBE = 0


def check_probe_args(n: int, concurrency: int) -> None:
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"bad probe size {n!r}", where="command line", field="--latency-probe",
                          fix="give 0 (off) or a positive number of items per task x strategy")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"bad probe concurrency {concurrency!r}", where="command line",
                          field="--probe-concurrency", fix="give a positive number of requests in flight")


def probe_plan(units: Sequence[Any], n: int) -> list[list[Any]]:
    """The first n units of each (task, strategy) group, as rounds: round i = item i of every group."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for u in units:
        g = groups.setdefault((u.task.name, u.strategy.spec), [])
        if len(g) < n:
            g.append(u)
    return [[g[i] for g in groups.values() if i < len(g)] for i in range(n)]


def _reset_prefix_cache(engine: Any) -> bool:
    """The contract's reset_prefix_cache, where the backend declares it can (a server keeps its cache)."""
    return bool(engine.reset_prefix_cache()) if engine.supports_prefix_cache_reset else False


def _row(unit: Any, comps: Sequence[Completion], wall_s: float, *, run_id: str, model: str,
         concurrency: int, wave: int) -> dict:
    lat = [c.latency_s for c in comps if c.latency_s is not None]
    ttfts = [c.ttft_s for c in comps if c.ttft_s is not None]
    latency = max(lat) if lat else wall_s
    ttft = min(ttfts) if ttfts else None
    ctoks = sum(sum(c.completion_tokens) for c in comps)
    first_out = max((max(c.completion_tokens) for c in comps if c.completion_tokens), default=0)
    tpot = (latency - ttft) / (first_out - 1) if ttft is not None and first_out > 1 else None
    errors = [c.error for c in comps if c.error]
    c = comps[0]
    return {"run_id": run_id, "task": unit.task.name, "strategy": unit.strategy.spec, "model": model,
            "example_id": unit.example.id, "probe": True, "probe_concurrency": concurrency, "wave": wave,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": ctoks,
            "cached_prompt_tokens": c.cached_prompt_tokens, "latency_s": latency, "ttft_s": ttft,
            "tpot_s": tpot, "wall_s": wall_s, "finish_reason": c.finish_reasons[0] if c.finish_reasons else None,
            "error": "; ".join(errors) if errors else None}


def run_probe(engine: Any, units: Sequence[Any], n: int, *, concurrency: int = 1, journal: Any, run_id: str,
              model: str) -> dict:
    """Send the probe, journal its rows, and return what run.json records about it.
    Groups already probed in this run folder (a resumed run) are not probed again."""
    done = {(e["p"]["task"], e["p"]["strategy"]) for e in journal.read()}
    todo = [u for u in units if (u.task.name, u.strategy.spec) not in done]
    rounds = probe_plan(todo, n)
    flat = [u for r in rounds for u in r]
    info = {"items_per_group": n, "concurrency": concurrency, "order": "groups take turns, item by item",
            "prefix_cache": "as is", "groups_already_probed": len(done), "requests": 0, "wall_s": 0.0}
    if not flat:
        return info
    t0 = time.perf_counter()
    send_requests(engine, flat, concurrency, journal, info, run_id=run_id, model=model)
    info["wall_s"] = round(time.perf_counter() - t0, 3)
    return info


def send_requests(engine: Any, flat: list[Any], concurrency: int, journal: Any, info: dict, *, run_id: str,
          model: str) -> None:
    engine.generate(list(flat[0].requests))  # warm-up, discarded
    if _reset_prefix_cache(engine):
        info["prefix_cache"] = "emptied before each call"
    # waves of `concurrency` units, in the interleaved order; each wave is one call (arriving together)
    for w, start in enumerate(range(0, len(flat), concurrency)):
        wave = flat[start:start + concurrency]
        reqs = [r for u in wave for r in u.requests]
        _reset_prefix_cache(engine)
        t = time.perf_counter()
        comps = engine.generate(reqs)
        wall = time.perf_counter() - t
        rows, i = [], 0
        for u in wave:
            rows.append({"p": _row(u, comps[i:i + len(u.requests)], wall, run_id=run_id, model=model,
                                   concurrency=len(wave), wave=w), "s": []})
            i += len(u.requests)
        journal.append(rows)
        info["requests"] += len(reqs)
    _reset_prefix_cache(engine)
