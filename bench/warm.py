"""WARM (issue 27, P11): a whole `harness run` command cold (it starts its own engine) against the same
command with the warm engine already started (`harness engine start`), alternating, 3 pairs:

    harness run --task coin_flip --strategy zero_shot --strategy cot --limit 20 --no-cache --out DIR

Each run is a fresh process and a fresh run folder (so nothing resumes) and writes its report, as a user's
command does. The cold runs set HARNESS_WARM=0, which is the only difference. Target: the sum of the warm
walls / the sum of the cold walls <= 0.25. The warm engine's own start is reported for information.

    python -m bench --only WARM
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .common import Row

COMMAND = ["run", "--task", "coin_flip", "--strategy", "zero_shot", "--strategy", "cot", "--limit", "20",
           "--no-cache", "--quiet"]
PAIRS = 3


def _harness(args: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                       timeout=1800)
    return time.perf_counter() - t0, r


def run(*, quick: bool = False, folder: Path, log: Callable[[str], None] = print) -> list[Row]:
    rt = folder / "warm-rt"
    rt.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "HARNESS_RUNTIME_DIR": str(rt)}
    log("[bench] WARM: harness engine start")
    start_s, r = _harness(["engine", "start"], env)
    if r.returncode != 0:
        return [Row("WARM", "warm / cold wall of a whole harness run", None, "<= 0.25",
                    note=f"engine start failed: {r.stderr.strip()[-300:]}")]
    cold, warm, notes = [], [], []
    try:
        for i in range(PAIRS):
            for kind, times, extra in (("cold", cold, {"HARNESS_WARM": "0"}), ("warm", warm, {})):
                wall, r = _harness(COMMAND + ["--out", str(folder / f"warm-{kind}-{i}")], {**env, **extra})
                used = "using the warm engine" in r.stderr
                if r.returncode != 0 or used != (kind == "warm"):
                    notes.append(f"{kind} {i}: exit {r.returncode}, warm engine used: {used}: {r.stderr.strip()[-200:]}")
                times.append(wall)
                log(f"[bench] WARM pair {i + 1}: {kind} {wall:.1f} s")
    finally:
        _harness(["engine", "stop"], env)
    ratio = sum(warm) / sum(cold)
    detail = {"cold_s": [round(x, 2) for x in cold], "warm_s": [round(x, 2) for x in warm],
              "engine_start_s": round(start_s, 2), "command": "harness " + " ".join(COMMAND)}
    return [Row("WARM", "warm / cold wall of a whole harness run (3 pairs)", ratio, "<= 0.25", detail,
                note="; ".join(notes)),
            Row("WARM", "cold run, mean s", sum(cold) / len(cold), None, {}),
            Row("WARM", "warm run, mean s", sum(warm) / len(warm), None, {}),
            Row("WARM", "harness engine start, s", start_s, None, {})]
