"""PROBE: what the latency and cost measures of docs/measures.md cost on the default suite.

`harness.run` of the default suite (4 tasks x zero_shot, few_shot:k=3, cot) with the measures on (one
engine call per task x strategy group, and the latency probe at its default size) / off (chunks that mix
groups, no probe), same engine, request cache off, each from an empty prefix cache, alternating. The
note splits the "on" run into batch and probe time (run.json's probe.wall_s).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .common import Row, abba, best, clock_ratio, clocked, fresh_prefix_cache


def run(backend: Any, *, quick: bool, out, limit: int | None = None) -> list[Row]:
    import harness
    from harness.defaults import DEFAULT_STRATEGIES, DEFAULT_TASKS
    from harness.probe import DEFAULT_PROBE

    limit = limit or (10 if quick else 50)
    reps = 1 if quick else 2
    probe_s: list[float] = []

    def side(on: bool):
        def fn():
            fresh_prefix_cache(backend)
            folder = out("probe-on" if on else "probe-off")
            clock, _ = clocked(lambda: harness.run(list(DEFAULT_TASKS), list(DEFAULT_STRATEGIES), backend=backend,
                                                   limit=limit, out=folder, progress=False, write_report=False,
                                                   cache=False, latency_probe=DEFAULT_PROBE if on else 0,
                                                   split_groups=on))
            if on:
                probe_s.append(json.loads((Path(folder) / "run.json").read_text())["probe"]["wall_s"])
            return clock
        return fn

    t_on, t_off = abba(side(True), side(False), reps=reps)
    wall, cpu, detail = clock_ratio(t_on, t_off)
    on_s, off_s = best(t_on).wall, best(t_off).wall
    groups = len(DEFAULT_TASKS) * len(DEFAULT_STRATEGIES)
    return [Row("PROBE", f"default suite wall, measures on / off (--limit {limit}, latency probe {DEFAULT_PROBE} "
                f"items x {groups} groups, best of {reps})", wall, "<= 1.25",
                detail={**detail, "limit": limit, "probe_items_per_group": DEFAULT_PROBE, "probe_wall_s": probe_s},
                note=f"on {on_s:.1f} s (probe {min(probe_s):.1f} s of it), off {off_s:.1f} s; CPU ratio {cpu:.3f}")]
