"""`harness run --check-determinism`: run a sample twice on the same engine and report any difference.

Both passes bypass the request cache and send the identical requests in the same batch. Known limit:
batch composition can change results on some engines (floating-point reductions depend on what else
is in the batch), so a run split into different chunks, or run on another engine mode (eager vs
compiled), another build or another device, may differ even with the same seed.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from .suite import parse_strategies
from .units import build_units
from ..task.tasks import load_task


def check_determinism(tasks: Sequence[str], strategies: Sequence[str], *, backend, limit: int = 5, seed: int = 0,
                      data_dir=None) -> pd.DataFrame:
    """One row per request: task, strategy, example_id, identical, first, second."""
    task_objs = [load_task(t, data_dir=data_dir) for t in tasks]
    strat_objs = parse_strategies(strategies)  # grids expand here too
    units = build_units(task_objs, strat_objs, limit=limit, seed=seed)
    reqs = [r for u in units for r in u.requests]
    first = backend.generate(reqs)
    second = backend.generate(reqs)
    rows, i = [], 0
    for u in units:
        for _ in u.requests:
            a, b = first[i], second[i]
            same = (a.texts, a.continuation_logprobs, a.error) == (b.texts, b.continuation_logprobs, b.error)
            rows.append({"task": u.task.name, "strategy": u.strategy.spec, "example_id": u.example.id,
                         "identical": same, "first": " | ".join(a.texts), "second": " | ".join(b.texts)})
            i += 1
    return pd.DataFrame(rows)
