"""Several models in one run folder: one engine at a time, each closed (its processes gone, its memory
freed) before the next starts.

    harness run --task coin_flip --model bundled --model /path/to/other-model --strategy zero_shot
    harness.runs.multimodel.run_models(["bundled", "/path/to/other-model"], tasks=["coin_flip"], strategies=["cot"], limit=20)

The runner runs one backend; this module loops over the models one level above it, into the same run
folder. A unit's identity holds the model (harness/runs/identity.py), so the journal, resume and the request
cache work per model, and the throughput cost and latency are per (task, strategy, model) group. run.json
keeps the list of models (`config.models`) and each model's own engine facts (`per_model`).

A server model is `NAME@URL` (`--model llama@http://127.0.0.1:8000/v1`): that model is asked at that
base URL; without `@URL` every `--base-url` serves every model (one server with several served names).
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ..errors import ConfigError
from .procs import process_tree
from .results import write_json_atomic

__all__ = ["run_models", "split_model_spec", "multi_model_resume", "engine_children"]

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


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def engine_children(before: set[tuple[int, int]] = frozenset()) -> list[int]:  # type: ignore[assignment]
    """PIDs of this process's live descendants that were not there `before` (an engine's core and
    workers), leaving out multiprocessing's resource tracker and the harness's watchdog (both live as
    long as this process)."""
    return sorted(pid for pid, t in _descendants() - set(before)
                  if not any(k in _cmdline(pid) for k in ("resource_tracker", "_watchdog.py")))


def _wait_children_gone(before, timeout: float = 30.0) -> list[int]:
    import time

    deadline = time.time() + timeout
    left = engine_children(before)
    while left and time.time() < deadline:
        time.sleep(0.2)
        left = engine_children(before)
    return left


def run_models(models: Sequence[str | None], *, make_backend: Callable[[str | None, str | None], Any] | None = None,
               out: str | Path | None = None, run_id: str | None = None, model_names: Sequence[str] | None = None,
               **kwargs: Any) -> pd.DataFrame:
    """`harness.runs.runner.run(**kwargs)` once per model into one run folder; returns the predictions of all
    models (df.attrs['run_dir']). `make_backend(model, base_url)` builds each model's backend (None: the
    offline vLLM engine from `model` and kwargs' `engine_options`); it is closed, and its engine processes
    are gone, before the next model's backend is built. `model_names` overrides display names (a resume)."""
    from . import runner

    models = list(models) or [None]
    if len(set(m or "bundled" for m in models)) != len(models):
        raise ConfigError("the same --model is given twice", field="--model", fix="give each model once")
    kwargs.pop("backend", None)
    kwargs.pop("model", None)
    kwargs.pop("model_name", None)
    run_dir = None
    first_meta: dict | None = None
    per_model: dict[str, dict] = {}
    preds = None
    for i, spec in enumerate(models):
        name, url = split_model_spec(spec)
        before = _descendants()
        backend = make_backend(name, url) if make_backend else None
        if backend is None:
            from ..backends.vllm import VLLMBackend

            backend = VLLMBackend(name, **(kwargs.get("engine_options") or {}))
        try:
            preds = runner.run(backend=backend, out=run_dir or out, run_id=run_id, model=name,
                               model_name=model_names[i] if model_names else None, **kwargs)
        finally:
            backend.close()
        left = _wait_children_gone(before)
        if left:
            raise ConfigError(f"the engine of {spec} left processes behind after close: {left}",
                              field="--model", fix="report this; kill those PIDs before another run")
        run_dir = Path(preds.attrs["run_dir"])
        meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        first_meta = first_meta or meta
        per_model[meta["config"]["model"]] = {"model_spec": meta["config"].get("model_spec") or spec,
                                              "base_url": url, "model_path": meta["config"].get("model_path"),
                                              **{k: meta.get(k) for k in PER_MODEL_KEYS if k in meta}}
        print(f"model {i + 1}/{len(models)} done: {meta['config']['model']} (engine closed)", file=sys.stderr)
    assert run_dir is not None and preds is not None and first_meta is not None
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    # one invocation is one run: the later models' calls are not resumes of the first model's
    meta["resumes"] = first_meta.get("resumes", [])
    meta["created_at"] = first_meta.get("created_at", meta.get("created_at"))
    meta["config"]["models"] = [{"name": n, "spec": v["model_spec"], "base_url": v["base_url"]}
                                for n, v in per_model.items()]
    meta["config"]["model"] = " + ".join(per_model)
    meta["per_model"] = per_model
    meta["units"] = len(preds)
    write_json_atomic(run_dir / "run.json", meta)
    preds.attrs["run_dir"] = str(run_dir)
    return preds


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


def cli_backend_factory(args: Any, make_backend: Callable) -> Callable[[str | None, str | None], Any]:
    """For `harness run`: each model's backend from the same flags, with its own base URL if it has one."""
    def build(model: str | None, url: str | None):
        a = copy.copy(args)
        a.model = model  # a server backend reads its served model name from the flags
        if url:
            a.base_url = [url]
        return make_backend(a, model=model)
    return build
