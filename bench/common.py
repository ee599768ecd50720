"""What every benchmark shares: the result row, timing with repeats, settings, and the engine helpers.
Engine counters: `stats_delta` is the harness's own (harness.backends.base), so the bench and the
run folder's engine_stats count the same way.

Every row is a RATIO measured in one process on one machine (absolute times on a shared 2-core
machine are noise). Timed pairs are run in ABBA order after a warm-up and the minimum of each side
is kept: the minimum is the run least disturbed by other work on the machine.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.backends.base import stats_delta  # noqa: F401 - one definition, re-exported for the benchmarks

# the shared evaluation sets (../shared/data beside the repo), or HARNESS_DATA_DIR
DATA = Path(os.environ.get("HARNESS_DATA_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))


@dataclass
class Row:
    """One line of the table. `target` is like "<= 1.05" or ">= 0.8"; None means for information."""

    id: str
    measure: str
    value: float | None
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        op, _, num = self.target.partition(" ")
        limit = float(num)
        return self.value <= limit if op == "<=" else self.value >= limit

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "measure": self.measure, "value": self.value, "target": self.target,
                "pass": self.passed, "note": self.note, "detail": self.detail}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


@dataclass(frozen=True)
class Clock:
    """Seconds of one measurement: wall clock, and CPU of this process tree (engine included)."""

    wall: float
    cpu: float

    def per(self, n: float) -> "Clock":
        return Clock(self.wall / n, self.cpu / n) if n else Clock(float("inf"), float("inf"))


def clocked(fn: Callable[[], Any]) -> tuple[Clock, Any]:
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = fn()
    return Clock(time.perf_counter() - t0, cpu_seconds() - c0), out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def abba(a: Callable[[], Clock], b: Callable[[], Clock], *, reps: int = 2) -> tuple[list[Clock], list[Clock]]:
    """Run a and b in the order a b, b a, a b, ... (`reps` of each) and return their Clocks.
    Each callable does its own preparation and returns the Clock of the part that counts."""
    ta: list[Clock] = []
    tb: list[Clock] = []
    for i in range(reps):
        if i % 2 == 0:
            ta.append(a())
            tb.append(b())
        else:
            tb.append(b())
            ta.append(a())
    return ta, tb


def best(clocks: Sequence[Clock]) -> Clock:
    """The least disturbed measurement: minimum wall and minimum CPU (each on its own)."""
    return Clock(min(c.wall for c in clocks), min(c.cpu for c in clocks))


def clock_ratio(a: Sequence[Clock], b: Sequence[Clock]) -> tuple[float | None, float | None, dict[str, Any]]:
    """(wall ratio, CPU ratio, detail) of the best of a over the best of b."""
    ba, bb = best(a), best(b)
    detail = {"a_wall_s": [round(c.wall, 4) for c in a], "b_wall_s": [round(c.wall, 4) for c in b],
              "a_cpu_s": [round(c.cpu, 4) for c in a], "b_cpu_s": [round(c.cpu, 4) for c in b],
              "cpu_ratio": ratio(ba.cpu, bb.cpu)}
    return ratio(ba.wall, bb.wall), ratio(ba.cpu, bb.cpu), detail


def fresh_prefix_cache(backend: Any) -> None:
    """Empty the engine's prefix cache (vLLM 0.32: `LLM.reset_prefix_cache()`), so that a measurement
    does not reuse blocks computed by an earlier one. Fails loudly: a silent miss would fake the numbers."""
    if not backend.llm.reset_prefix_cache():
        raise RuntimeError("reset_prefix_cache() refused (requests still running?)")


@dataclass
class Settings:
    """What every engine benchmark is given: the size (quick or full), the repeats, a scratch folder."""

    quick: bool
    folder: Path
    reps: int = 0
    _n: int = 0

    def __post_init__(self) -> None:
        self.reps = self.reps or (2 if self.quick else 3)

    def out(self, tag: str) -> Path:
        """A new run folder under the scratch folder."""
        self._n += 1
        return self.folder / f"{tag}-{self._n}"


@dataclass(frozen=True)
class Timed:
    """One benchmark's measurements handed to the row that compares them (a baseline, an on/off pair)."""

    clocks: list[Clock]
    hit_rate: float | None = None
    texts: list[Any] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


def wall_text(c: Sequence[Clock]) -> str:
    return f"{best(c).wall:.2f} s"


def scratch_dir() -> Path:
    root = Path(os.environ.get("BENCH_TMP") or tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix="bench-", dir=root))


def requests_of(tasks: Sequence[Any], strategies: Sequence[str], *, limit: int, seed: int = 0) -> list[Any]:
    """The rendered requests the harness would send (one per unit for these strategies)."""
    from harness.runs.units import build_units
    from harness.strategy.strategies import parse_strategy
    from harness.task.tasks import load_task

    task_objs = [t if not isinstance(t, str) else load_task(t) for t in tasks]
    units = build_units(task_objs, [parse_strategy(s) for s in strategies], limit=limit, seed=seed)
    return [r for u in units for r in u.requests]


def vllm_params(request: Any) -> Any:
    """A harness Request -> the `vllm.SamplingParams` the backend would build (same translation)."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from harness.backends.vllm import to_sampling_params

    kwargs = to_sampling_params(request.sampling, request.output_type)
    if "structured_outputs" in kwargs:
        kwargs["structured_outputs"] = StructuredOutputsParams(**kwargs["structured_outputs"])
    return SamplingParams(**kwargs)


def engine(**options: Any) -> Any:
    """A started VLLMBackend (no progress bars). Close it before starting another: 2 cores."""
    from harness.backends.vllm import VLLMBackend

    backend = VLLMBackend(use_tqdm=False, **options)
    backend.start()
    return backend


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def table(rows: Sequence[Row]) -> str:
    head = ["id", "measure", "value", "target", "pass"]
    body = [[r.id, r.measure, fmt(r.value), r.target or "-",
             {True: "PASS", False: "FAIL", None: "info"}[r.passed]] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its children (the engine core and its worker),
    user + system. On a shared machine this moves less with other people's load than the wall clock."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total
