"""P5: the harness's own throughput, with an instant scripted backend (no model).

`harness.run` on a generated task of N examples with a ScriptedBackend that returns a fixed string:
render + expand + reduce + score + journal + parquet/CSV, everything but the model. Each size runs
in its own process (`python -m bench.harness_only N STRATEGY`), so the peak memory of one size
is not hidden by another; a 200-example run first takes the import and first-call costs out.

Throughput is examples per second of CPU time of the process (on a shared 2-core machine the wall
clock also counts other people's work; wall-clock numbers are reported next to it). With zero-shot,
one example is one sample.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import Row, ratio, scratch_dir

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 5_000, 20_000)


def _task_file(folder: Path, n: int) -> Path:
    """multistep_arithmetic with n generated items, as its own task file."""
    src = (ROOT / "tasks" / "multistep_arithmetic.yaml").read_text(encoding="utf-8")
    src = src.replace("name: multistep_arithmetic", f"name: p5_arith_{n}").replace("n: 500", f"n: {n}")
    path = folder / f"p5_arith_{n}.yaml"
    path.write_text(src, encoding="utf-8")
    return path


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(n: int, strategy: str) -> dict[str, Any]:
    """One size, in this process. Returns times, throughput and memory."""
    import harness
    from harness.backends.scripted import ScriptedBackend
    from harness.task.tasks import load_task

    folder = scratch_dir()
    backend = ScriptedBackend(lambda r: "The answer is 7.")
    warm = load_task(str(_task_file(folder, 200)))
    harness.run([warm], [strategy], backend=backend, out=folder / "warm", progress=False, write_report=False,
                cache=False)
    rss0 = _rss_bytes()
    t = time.perf_counter()
    task = load_task(str(_task_file(folder, n)))
    task.examples, task.pool  # noqa: B018 - load the data now: its time is reported apart
    load_s = time.perf_counter() - t
    w0, c0 = time.perf_counter(), time.process_time()
    df = harness.run([task], [strategy], backend=backend, out=folder / "run", progress=False, write_report=False,
                     cache=False)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert len(df) == n and df["error"].isna().all(), "the scripted run lost rows"
    return {"n": n, "strategy": strategy, "wall_s": wall, "cpu_s": cpu, "load_s": load_s,
            "per_s_cpu": n / cpu, "per_s_wall": n / wall, "peak_rss_delta_b": max(peak - rss0, 0),
            "bytes_per_example": max(peak - rss0, 0) / n, "rows": len(df)}


def measure(n: int, strategy: str = "zero_shot", *, pythonpath: str | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath:  # the baseline: another copy of the harness package, same tasks and prompts
        env["BENCH_HARNESS_PATH"] = pythonpath
        env["HARNESS_HOME"] = str(ROOT)
    out = subprocess.run([sys.executable, "-m", "bench.harness_only", str(n), strategy], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"P5 worker failed (n={n}): {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(*, quick: bool, baseline: str | None = None) -> list[Row]:
    sizes = QUICK_SIZES if quick else SIZES
    res = {n: measure(n) for n in sizes}
    small, mid, big = (res[n] for n in sizes)
    # time = fixed + per_example * n, from the two largest sizes (CPU seconds)
    per_ex = (big["cpu_s"] - mid["cpu_s"]) / (big["n"] - mid["n"])
    fixed = big["cpu_s"] - per_ex * big["n"]
    rows = [Row(f"P5@{n // 1000}k", f"harness-only examples/s (CPU time), zero_shot, n={n:,}", r["per_s_cpu"],
                ">= 20000" if n == big["n"] else None,
                detail={k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()},
                note=f"wall {r['per_s_wall']:,.0f}/s; {r['bytes_per_example']:,.0f} B/example peak RSS")
            for n, r in res.items()]
    rows.append(Row("P5-lin", f"linearity: examples/s at {big['n']:,} / at {mid['n']:,}",
                    ratio(big["per_s_cpu"], mid["per_s_cpu"]), ">= 0.8",
                    detail={"fixed_cpu_s": round(fixed, 4), "per_example_us": round(per_ex * 1e6, 2)},
                    note=f"fit: {fixed:.2f} s + {per_ex * 1e6:.1f} us x n"))
    rows.append(Row("P5-mem", f"memory flat: peak-RSS bytes/example at {big['n']:,} / at {mid['n']:,}",
                    ratio(big["bytes_per_example"], mid["bytes_per_example"]), "<= 1.25",
                    note=f"{mid['bytes_per_example']:,.0f} -> {big['bytes_per_example']:,.0f} B/example"))
    fs = measure(mid["n"], "few_shot:k=5")
    rows.append(Row("P5-fs", f"harness-only examples/s (CPU time), few_shot:k=5, n={mid['n']:,}",
                    fs["per_s_cpu"], None, detail=fs))
    if baseline:
        before = measure(big["n"], pythonpath=baseline)
        before_fs = measure(mid["n"], "few_shot:k=5", pythonpath=baseline)
        rows.append(Row("P5-gain", f"after / before the fixes, examples/s, zero_shot n={big['n']:,}",
                        ratio(big["per_s_cpu"], before["per_s_cpu"]), None, detail={"before": before},
                        note=f"before: {before['per_s_cpu']:,.0f}/s CPU, {before['per_s_wall']:,.0f}/s wall"))
        rows.append(Row("P5-gain-fs", f"after / before the fixes, examples/s, few_shot:k=5 n={mid['n']:,}",
                        ratio(fs["per_s_cpu"], before_fs["per_s_cpu"]), None, detail={"before": before_fs},
                        note=f"before: {before_fs['per_s_cpu']:,.0f}/s CPU"))
    return rows


if __name__ == "__main__":
    if os.environ.get("BENCH_HARNESS_PATH"):  # ahead of the working tree (python -m puts the cwd first)
        sys.path.insert(0, os.environ["BENCH_HARNESS_PATH"])
    print(json.dumps(worker(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "zero_shot")))
