"""Several models in one run folder: one engine at a time, each closed (its processes gone, its memory
freed) before the next starts.

    harness run --task coin_flip --model bundled --model /path/to/other-model --strategy zero_shot
    harness.run(tasks=["coin_flip"], strategies=["cot"], models=["bundled", "/path/to/other-model"], limit=20)

The runner runs one backend; this module loops over the models one level above it, into the same run
folder. A unit's identity holds the model (harness/runs/identity.py), so the journal, resume and the request
cache work per model, and the throughput cost and latency are per (task, strategy, model) group. run.json
keeps the list of models (`config.models`) and each model's own engine facts (`per_model`).

A server model is `NAME@URL` (`--model llama@http://127.0.0.1:8000/v1`): that model is asked at that
base URL; without `@URL` every `--base-url` serves every model (one server with several served names).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pandas as pd

from ..errors import ConfigError
from ..system.procs import cmdline, process_tree
from .results import write_json_atomic
from .spec import RunSpec

__all__ = ["run_spec", "split_model_spec", "multi_model_resume", "engine_children"]

PER_MODEL_KEYS = ("engine", "engine_started", "engine_stats", "wall_s", "pricing", "probe", "calibration",
                 "model_info", "backend")


def split_model_spec(spec: str | None) -> tuple[str | None, str | None]:
    """'name@http://host:8000/v1' -> ('name', 'http://host:8000/v1'); anything else -> (spec, None).

    >>> split_model_spec("llama@http://127.0.0.1:8000/v1")
    ('llama', 'http://127.0.0.1:8000/v1')
    >>> split_model_spec("bundled")
    ('bundled', None)
    """
    if spec and "@" in spec:
        name, _, url = spec.rpartition("@")
        if url.startswith(("http://", "https://")):
            if not name:
                raise ConfigError(f"'{spec}' has a URL but no model name", field="--model",
                                  fix="write NAME@URL, e.g. --model llama@http://127.0.0.1:8000/v1")
            return name, url
    return spec, None


def _descendants() -> set[tuple[int, int]]:
    """(pid, start time) of this process's live descendants."""
    return set(process_tree().items())


def engine_children(before: set[tuple[int, int]] = frozenset()) -> list[int]:  # type: ignore[assignment]
    """PIDs of this process's live descendants that were not there `before` (an engine's core and
    workers), leaving out multiprocessing's resource tracker and the harness's watchdog (both live as
    long as this process)."""
    return sorted(pid for pid, t in _descendants() - set(before)
                  if not any(k in cmdline(pid) for k in ("resource_tracker", "_watchdog.py")))


def _wait_children_gone(before, timeout: float = 30.0) -> list[int]:
    import time

    deadline = time.time() + timeout
    left = engine_children(before)
    while left and time.time() < deadline:
        time.sleep(0.2)
        left = engine_children(before)
    return left


BackendFactory = Callable[[Optional[str], Optional[str]], tuple[Any, bool]]


def run_spec(spec: RunSpec, backends: BackendFactory, *, progress: bool = True, verbose: bool = False,
             display_names: Sequence[str] | None = None, judges: dict | None = None) -> pd.DataFrame:
    """Run a spec on each of its models in turn, into one run folder; return the predictions of all
    (df.attrs['run_dir']). `backends(model, base_url)` gives each model's backend and whether this call
    owns it: an owned backend is closed, and its engine processes are gone, before the next model's is
    built. `display_names` overrides the models' display names (the resume of a pre-spec folder)."""
    from . import runner

    models = list(spec.models) or [None]
    if len(set(m or "bundled" for m in models)) != len(models):
        raise ConfigError("the same --model is given twice", field="--model", fix="give each model once")
    run_dir: Path | None = None
    metas: list[tuple[str | None, str | None, dict]] = []
    preds = None
    for i, model in enumerate(models):
        name, url = split_model_spec(model)
        before = _descendants()
        backend, owned = backends(name, url)
        try:
            preds = runner.run_model(spec, backend, model=name, run_dir=run_dir, progress=progress, verbose=verbose,
                                     display_name=display_names[i] if display_names else None, judges=judges)
        finally:
            if owned:
                backend.close()  # first: what the engine says as it stops comes before any hint
        run_dir = Path(preds.attrs["run_dir"])
        if len(models) > 1:
            left = _wait_children_gone(before) if owned else []
            if left:
                raise ConfigError(f"the engine of {model} left processes behind after close: {left}",
                                  field="--model", fix="report this; kill those PIDs before another run")
            metas.append((model, url, json.loads((run_dir / "run.json").read_text(encoding="utf-8"))))
            print(f"model {i + 1}/{len(models)} done: {metas[-1][2]['config']['model']} (engine closed)",
                  file=sys.stderr)
    assert run_dir is not None and preds is not None
    if len(models) > 1:
        _merge_meta(run_dir, metas, len(preds))
    preds.attrs["run_dir"] = str(run_dir)
    return preds


def _merge_meta(run_dir: Path, metas: list[tuple[str | None, str | None, dict]], units: int) -> None:
    """One run.json for the models of one invocation (the later models' calls are not resumes)."""
    first = metas[0][2]
    per_model = {m["config"]["model"]: {"model_spec": m["config"].get("model_spec") or spec, "base_url": url,
                                        "model_path": m["config"].get("model_path"),
                                        **{k: m.get(k) for k in PER_MODEL_KEYS if k in m}}
                 for spec, url, m in metas}
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    meta["resumes"] = first.get("resumes", [])
    meta["created_at"] = first.get("created_at", meta.get("created_at"))
    meta["config"]["models"] = [{"name": n, "spec": v["model_spec"], "base_url": v["base_url"]}
                                for n, v in per_model.items()]
    meta["config"]["model"] = " + ".join(per_model)
    meta["per_model"] = per_model
    meta["units"] = units
    write_json_atomic(run_dir / "run.json", meta)


def multi_model_resume(run_dir: str | Path) -> tuple[list[str], list[str]] | None:
    """(model specs, display names) recorded by a multi-model run, or None for a one-model run."""
    try:
        cfg = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8")).get("config") or {}
    except (OSError, json.JSONDecodeError):
        return None
    models = cfg.get("models")
    if not models or len(models) < 2:
        return None
    specs = [(m["spec"] + "@" + m["base_url"]) if m.get("base_url") else m["spec"] for m in models]
    return specs, [m["name"] for m in models]
