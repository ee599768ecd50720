"""Latency calibrations kept between runs (docs/measures.md, "Small runs").

A calibration (harness/runs/latency_model.py) is a property of the model, the engine settings and the
machine, not of the run: a run large enough to calibrate stores its requests' timings here, and a later
run too small to calibrate its own reuses them, labelled with the date ("estimate, calibrated 2026-12-04
on this machine"). Files live next to the request cache:

    <request cache folder>/calibrations/<key>.json     key = sha256 of (model identity, engine settings, machine)

Each file: {"kind": "full" | "reduced", "created_at", "date", "model", "machine", "points": [the calibration
requests' rows: prompt_tokens, completion_tokens, latency_s, ttft_s, ...]}. A full calibration replaces any
earlier one; a reduced one (REDUCED_CALIBRATION requests, from a small run) never replaces a full one.
A run folder that reused one keeps a copy (calibration_reused.json, {model: entry}), so its report and a
re-finalize do not depend on the cache staying as it was.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .results import write_json_atomic

SUMMARY_KEYS = ("kind", "created_at", "date", "model", "key")  # what run.json's calibration.reused records
POINT_KEYS = ("task", "strategy", "example_id", "prompt_tokens", "completion_tokens", "latency_s", "ttft_s",
              "tpot_s", "error")
VOLATILE_SETTINGS = ("vllm_check",)  # engine settings that are reports, not settings
REUSED_FILE = "calibration_reused.json"  # run folder: {model: the cached calibration this run reused}


def machine() -> dict[str, Any]:
    """What identifies this machine for timings: host name, CPU model, logical CPUs, OS and architecture."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "system": platform.system(),
            "arch": platform.machine()}


def key(engine: Any) -> str:
    """sha256 of the model identity (name, path, weights fingerprint), the engine settings and the machine."""
    from .identity import model_identity

    settings = {k: v for k, v in (engine.engine_settings() or {}).items() if k not in VOLATILE_SETTINGS}
    blob = json.dumps({"model": model_identity(engine), "path": str(engine.model_path), "settings": settings,
                       "machine": machine()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _path(folder: Path, k: str) -> Path:
    return Path(folder) / "calibrations" / f"{k}.json"


def load(folder: Path | None, k: str) -> dict | None:
    """The cached calibration under key k, or None (no folder, no file, or a file that is not one)."""
    if folder is None:
        return None
    try:
        entry = json.loads(_path(folder, k).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("points"), list) or entry.get("key") != k:
        return None
    return entry


def store(folder: Path, k: str, points: list[dict], *, kind: str, model: str) -> dict | None:
    """Keep this calibration under key k (a reduced one only when no full one is there). Returns the entry."""
    pts = [{c: p.get(c) for c in POINT_KEYS} for p in points if not p.get("error")]
    if not pts:
        return None
    old = load(folder, k)
    if kind == "reduced" and old and old.get("kind") == "full":
        return None
    now = datetime.now(timezone.utc)
    entry = {"key": k, "kind": kind, "created_at": now.isoformat(timespec="seconds"), "date": now.date().isoformat(),
             "model": model, "machine": machine(), "points": pts}
    path = _path(folder, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, entry)
    return entry


def record_reuse(run_dir: Path, model: str, entry: dict) -> None:
    """Copy the reused calibration into the run folder (calibration_reused.json, one entry per model)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    have = read_reuse(run_dir)
    have[model] = entry
    write_json_atomic(run_dir / REUSED_FILE, have)


def read_reuse(run_dir: Path) -> dict[str, dict]:
    """{model: the cached calibration this run reused} ({} when it reused none)."""
    try:
        d = json.loads((Path(run_dir) / REUSED_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return {m: e for m, e in d.items() if isinstance(e, dict) and isinstance(e.get("points"), list)} \
        if isinstance(d, dict) else {}
