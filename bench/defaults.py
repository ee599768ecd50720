"""Engine defaults on the CPU build, chosen by measurement: KV block size and preloaded libraries.

Each variant is a fresh process (LD_PRELOAD only acts when a process starts; vLLM's engine core and
worker are spawned children and inherit it) running the same workload on one engine: few_shot:k=5
on multistep_arithmetic (generation, a ~200-token shared prefix, caching on) and arc_challenge_25shot
(log-likelihood, a ~1,000-token shared prefix). Measured: wall and CPU seconds of the process tree
(engine included) for the workload, engine start excluded. Variants run in A B C ... C B A order
and the best of each is kept (the shared machine's load moves absolute times).

    python -m bench.defaults [--reps 2] [--limit 40]      (one engine at a time; wrap in engine-slot)
    python -m bench --only DEFAULTS                         (the same, as rows of the bench table)

Rows: DEF-B32-gen / DEF-B32-ll (b32 / b128), DEF-TCM-* (b32+tcmalloc / b32), DEF-IOMP-* (b32+iomp / b32),
DEF-BOTH-* (b32+both / b32); walls, best of the reps. The harness's defaults (docs/engine.md): block 32
on CPU and tcmalloc preloaded (harness/backends/preload.py); Intel OpenMP not preloaded.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.backends.preload import tcmalloc_path as tcmalloc  # the file the harness preloads

from .common import DATA


def iomp() -> str | None:
    """Intel OpenMP from the `intel-openmp` wheel, in the venv's lib folder."""
    path = Path(sys.prefix) / "lib" / "libiomp5.so"
    return str(path) if path.is_file() else None


# each variant pins its LD_PRELOAD: the harness's own preload (preload.py) is turned off in the children
VARIANTS = {
    "b128": (128, []),
    "b32": (32, []),
    "b32+iomp": (32, ["iomp"]),
    "b32+tcmalloc": (32, ["tcmalloc"]),
    "b32+both": (32, ["tcmalloc", "iomp"]),
}


def child(block_size: int, limit: int) -> dict:
    import harness

    from .common import clocked, engine, fresh_prefix_cache

    backend = engine(block_size=block_size)
    out = {}
    try:
        for label, task, strategy in (("gen5shot", "multistep_arithmetic", "few_shot:k=5"),
                                      ("ll25shot", "arc_challenge_25shot", "zero_shot")):
            fresh_prefix_cache(backend)
            c, _ = clocked(lambda: harness.run([task], [strategy], backend=backend, limit=limit, data_dir=DATA,
                                               out=Path(os.environ.get("BENCH_TMP", "/tmp")) / f"{label}-{time.time()}",
                                               progress=False, write_report=False, cache=False))
            out[label] = {"wall_s": round(c.wall, 3), "cpu_s": round(c.cpu, 3)}
    finally:
        backend.close()
    return out


def measure(names: list[str], reps: int, limit: int, log=print) -> dict[str, list[dict]]:
    """Each variant `reps` times, in A B C ... C B A order; {variant: [child results]}."""
    libs = {"iomp": iomp(), "tcmalloc": tcmalloc()}
    names = [v for v in names if all(libs[x] for x in VARIANTS[v][1])]
    order = [n for r in range(reps) for n in (names if r % 2 == 0 else names[::-1])]
    results: dict[str, list[dict]] = {n: [] for n in names}
    for name in order:
        env = dict(os.environ, HARNESS_PRELOAD="0")
        preload = [libs[x] for x in VARIANTS[name][1]]
        if preload:
            env["LD_PRELOAD"] = ":".join(preload)
        else:
            env.pop("LD_PRELOAD", None)
        proc = subprocess.run([sys.executable, "-m", "bench.defaults", "--child", name, "--limit", str(limit)],
                              env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            log(f"[defaults] {name} failed:\n{proc.stderr[-2000:]}")
            continue
        results[name].append(json.loads(line[7:]))
        log(f"[defaults] {name}: {line[7:]}")
    return results


def best(results: dict[str, list[dict]]) -> dict[str, dict]:
    return {name: {k: {m: min(r[k][m] for r in runs) for m in ("wall_s", "cpu_s")} for k in runs[0]}
            for name, runs in results.items() if runs}


def run(*, quick: bool, log=print) -> list:
    """The DEFAULTS rows of `python -m bench` (quick: 1 rep of 20 items; else 2 reps of 40)."""
    from .common import Row

    b = best(measure(list(VARIANTS), 1 if quick else 2, 20 if quick else 40, log=log))
    rows = []
    for rid, name, base, what in (("DEF-B32", "b32", "b128", "block 32 / 128"),
                                  ("DEF-TCM", "b32+tcmalloc", "b32", "tcmalloc / none"),
                                  ("DEF-IOMP", "b32+iomp", "b32", "Intel OpenMP / none"),
                                  ("DEF-BOTH", "b32+both", "b32", "tcmalloc + Intel OpenMP / none")):
        if name not in b or base not in b:
            continue
        for k, label in (("gen5shot", "5-shot generation"), ("ll25shot", "25-shot log-likelihood")):
            rows.append(Row(f"{rid}-{k[:3]}", f"{what}, {label}: wall", b[name][k]["wall_s"] / b[base][k]["wall_s"],
                            None, {"variant": b[name][k], "base": b[base][k]},
                            f"{b[name][k]['wall_s']} s vs {b[base][k]['wall_s']} s (best of the reps)"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.defaults")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.child:
        print("RESULT " + json.dumps(child(VARIANTS[a.child][0], a.limit)), flush=True)
        return 0
    libs = {"iomp": iomp(), "tcmalloc": tcmalloc()}
    results = measure(a.variants.split(","), a.reps, a.limit, log=lambda m: print(m, file=sys.stderr, flush=True))
    base = "b128"
    summary = best(results)
    for name, s in summary.items():
        rel = {k: {m: round(s[k][m] / summary[base][k][m], 3) for m in s[k]} for k in s} if base in summary else {}
        print(f"{name:14s} {json.dumps(s)}  / b128: {json.dumps(rel)}")
    if a.out:
        Path(a.out).write_text(json.dumps({"libs": libs, "runs": results, "best": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
