"""PROBE: what the default latency and cost measures of docs/measures.md cost on the default suite.

`harness.run` of the default suite (harness/runs/defaults.py: 11 task x strategy groups) with the default
measures on (one engine call per group for the throughput cost, then the latency model's calibration
requests: no flag given) / off (chunks that mix groups, `latency_probe=0`), same engine, request cache off,
each from an empty prefix cache, alternating. The note splits the "on" run into the batch and the
calibration (run.json's wall_s and calibration.wall_s) and gives the fit's leave-one-out error.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .common import Row, abba, best, clock_ratio, clocked, fresh_prefix_cache

GROUP_COLUMNS = ["task", "strategy", "accuracy", "mean_prompt_tokens", "mean_completion_tokens", "latency_source",
                 "est_latency_p50_s", "est_ttft_p50_s", "est_extrapolated_share", "engine_s_per_example",
                 "batch_latency_p50_s"]


def run(backend: Any, *, quick: bool, out, limit: int | None = None) -> list[Row]:
    import harness
    from harness.runs.defaults import DEFAULT_SUITE

    limit = limit or (10 if quick else 50)
    reps = 1 if quick else 2
    metas: dict[bool, list[dict]] = {True: [], False: []}
    groups_seen: list[dict] = []

    def side(on: bool):
        def fn():
            fresh_prefix_cache(backend)
            folder = out("measures-on" if on else "measures-off")
            # no tasks and no strategies: the default suite; no latency flag: the default measures
            kw = {} if on else {"latency_probe": 0, "split_groups": False}
            clock, _ = clocked(lambda: harness.run(backend=backend, limit=limit, out=folder, progress=False,
                                                   write_report=False, cache=False, **kw))
            metas[on].append(json.loads((Path(folder) / "run.json").read_text()))
            if on:  # what the default buys: each group's estimate next to its throughput cost
                summary = pd.read_csv(Path(folder) / "summary.csv")
                groups_seen[:] = summary.reindex(columns=GROUP_COLUMNS).round(4).to_dict("records")
            return clock
        return fn

    t_on, t_off = abba(side(True), side(False), reps=reps)
    wall, cpu, detail = clock_ratio(t_on, t_off)
    on_s, off_s = best(t_on).wall, best(t_off).wall
    calib = [m.get("calibration", {}).get("wall_s") for m in metas[True]]
    batch_on = [m["wall_s"] for m in metas[True]]
    batch_off = [m["wall_s"] for m in metas[False]]
    fits = [m.get("latency_model", {}).get("models", {}) for m in metas[True]]
    mape = [round(f["loo_mape"], 3) for ff in fits for f in ff.values()]
    groups = sum(len(v) for v in DEFAULT_SUITE.values())
    return [Row("PROBE", f"default suite wall, default measures on / off (--limit {limit}, {groups} groups, "
                f"best of {reps})", wall, "<= 1.25",
                detail={**detail, "limit": limit, "calibration_wall_s": calib, "batch_wall_on_s": batch_on,
                        "batch_wall_off_s": batch_off, "fit_loo_mape": mape,
                        "calibration": [m.get("calibration") for m in metas[True]], "groups_last_on_run": groups_seen},
                note=f"on {on_s:.1f} s (batch {min(batch_on):.1f} s split by group + calibration "
                     f"{min(c for c in calib if c is not None) if any(c is not None for c in calib) else 0:.1f} s), "
                     f"off {off_s:.1f} s (batch {min(batch_off):.1f} s); fit leave-one-out MAPE {mape}; "
                     f"CPU ratio {cpu:.3f}")]
