"""python -m bench [--quick] [--only P1,P3] [--out FILE] [--p5-before REV]

Runs the benchmarks, prints one table of ratios (id, measure, value, target, pass) and writes it
as JSON (default results/bench-<timestamp>.json; the path is printed last). See docs/bench.md.
The guard below matters: vLLM's CPU platform starts its workers with spawn.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

GROUPS = ("P5", "P1", "P2", "P3", "P4", "SPEC", "B128", "COMPILE", "CTX", "PROBE", "P7", "P6", "PARITY", "DEFAULTS", "WARM",
          "RAY")
ROOT = Path(__file__).resolve().parent.parent


def _env(tmp: Path) -> None:
    """No network; vLLM's cache and RPC sockets in a scratch folder; quieter engine logs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ["VLLM_CACHE_ROOT"] = str(tmp / "vllm-cache")
    os.environ["VLLM_RPC_BASE_PATH"] = str(tmp / "rpc")
    os.environ["BENCH_TMP"] = str(tmp)
    (tmp / "rpc").mkdir(parents=True, exist_ok=True)


def _baseline(rev: str, tmp: Path) -> str:
    """The harness package as of git revision `rev`, unpacked in a scratch folder (for P5 before/after)."""
    dest = tmp / f"harness-{rev}"
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "harness"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return str(dest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help=f"comma-separated groups: {','.join(GROUPS)} (RAY only when named)")
    p.add_argument("--quick", action="store_true", help="smaller sizes; skips the compiled, block-128 and guidance engines and CTX (~5 min)")
    p.add_argument("--out", default=None, help="JSON file (default results/bench-<timestamp>.json)")
    p.add_argument("--p5-before", default=None, metavar="REV",
                   help="also run P5 on the harness of git revision REV (e.g. HEAD) for before/after")
    a = p.parse_args(argv)
    only = set(GROUPS) - {"RAY"} if not a.only else {x.strip().upper() for x in a.only.split(",") if x.strip()}
    unknown = only - set(GROUPS)
    if unknown:
        p.error(f"unknown group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    out = Path(a.out) if a.out else ROOT / "results" / f"bench-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    _env(tmp)
    from harness.system.procs import guard
    guard()  # however the benchmark ends (SIGKILL included), no engine or server it started outlives it

    from .common import table

    rows: list = []
    started = time.perf_counter()

    def save(status: str) -> None:
        doc = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "status": status,
               "quick": a.quick, "only": sorted(only), "wall_s": round(time.perf_counter() - started, 1),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_avg_at_end": os.getloadavg()},
               "rows": [r.as_dict() for r in rows]}
        out.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")

    try:
        if "P5" in only:
            from . import harness_only
            print("[bench] P5 (harness only, scripted backend)", flush=True)
            rows.extend(harness_only.run(quick=a.quick, baseline=_baseline(a.p5_before, tmp) if a.p5_before else None))
            save("running")
        if only & {"P1", "P2", "P3", "P4", "SPEC", "B128", "COMPILE", "CTX", "PROBE"}:
            from . import engine
            rows.extend(engine.run(quick=a.quick, only=only, folder=tmp,
                                   log=lambda m: print(m, file=sys.stderr, flush=True)))
            save("running")
        if only & {"P6", "PARITY"}:
            from . import parity
            rows.extend(parity.run(quick=a.quick, only=only, folder=tmp,
                                   log=lambda m: print(m, file=sys.stderr, flush=True)))
            save("running")
        if "DEFAULTS" in only:
            from . import defaults
            rows.extend(defaults.run(quick=a.quick, log=lambda m: print(m, file=sys.stderr, flush=True)))
            save("running")
        if "WARM" in only:  # issue 27: a whole run cold vs with the warm engine (bench/warm.py)
            from . import warm
            rows.extend(warm.run(quick=a.quick, folder=tmp, log=lambda m: print(m, file=sys.stderr, flush=True)))
            save("running")
        if "RAY" in only:  # issue 26: --backend ray against the offline engine (bench/ray.py)
            from . import ray as ray_bench
            rows.extend(ray_bench.run(quick=a.quick, log=lambda m: print(m, file=sys.stderr, flush=True)))
            save("running")
        if "P7" in only:
            from . import server
            rows.extend(server.run(quick=a.quick, log=lambda m: print(m, file=sys.stderr, flush=True)))
        save("complete")
    except BaseException:
        save("failed")
        print(table(rows))
        print(f"[bench] partial results: {out}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(table(rows))
    for r in rows:
        if r.note:
            print(f"  {r.id}: {r.note}")
    print(f"\n{out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
