"""The runner: expand -> one batched generate per chunk -> reduce -> score -> journal -> results.

Everything is validated (tasks, templates, strategies, every request rendered) before the run folder is
touched, so bad input never damages an existing run. Completed units are journaled a chunk at a time;
a resume reuses exactly the units whose content-addressed identity (harness/runs/identity.py) is journaled.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..backends.base import Backend, check_backend, stats_delta
from ..errors import ConfigError
from .identity import check_distinct, model_identity, plan_units
from .procs import deferred
from .progress import progress as progress_bar
from .provenance import templates_used, versions
from .results import (RESULTS_DIR, Journal, check_run_folder, entry_id, frames_from_journal, run_folder,
                      write_frame_atomic, write_json_atomic)
from ..strategy.strategies import Strategy
from .suite import suite_config
from .units import Unit, build_units, default_format, make_row  # noqa: F401 - build_units, make_row: their old home
from ..task.tasks import Task

DEFAULT_CHUNK = 512  # requests per engine call; a run of up to this many requests is one batched call
__all__ = ["run", "build_units", "make_row", "finalize", "resume_args", "stats_delta", "RunInterrupted", "Unit",
           "DEFAULT_CHUNK", "RESULTS_DIR"]


def _chunks(units: list[Unit], size: int, *, by_group: bool = True):
    """Chunks of at most `size` requests that never mix two (task, strategy) groups, so each engine call's
    wall time belongs to one group (the throughput cost, docs/measures.md). Units arrive grouped.
    by_group=False mixes groups in a chunk (the old behaviour, kept for the bench's on/off row)."""
    chunk, n, key = [], 0, None
    for u in units:
        k = (u.task.name, u.strategy.spec) if by_group else None
        if chunk and k != key:
            yield chunk
            chunk, n = [], 0
        chunk.append(u)
        key = k
        n += len(u.requests)
        if n >= size:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def run(tasks: Sequence[str | Task] = (), strategies: Sequence[str | Strategy] = (), *, suite: dict | None = None,
        model: str | None = None,
        backend: Backend | None = None, limit: int | None = None, seed: int = 0,
        data_dir: str | Path | None = None, out: str | Path | None = None, run_id: str | None = None,
        chunk_size: int | None = None, engine_options: dict | None = None, price_table: dict | None = None,
        progress: bool = True, cache: bool = True, cache_dir: str | Path | None = None,
        retry_errors: bool = True, force: bool = False, model_name: str | None = None,
        latency_probe: int | None = None, probe_concurrency: int = 1, hourly_usd: float | None = None,
        split_groups: bool = True, latency_calibration: int | None = None) -> pd.DataFrame:
    """Run tasks x strategies on a model and return the predictions DataFrame
    (df.attrs['run_dir'] holds the run folder). Re-running with the same `out` resumes: the units whose
    content-addressed identity (harness.runs.identity) is in the journal are reused; a unit of the same
    task, strategy, model and example whose identity changed is refused (ConfigError), or with
    `force=True` run next to the old one, its strategy labelled `SPEC@CONFIG`. `model_name` overrides
    the backend's display name (a resume passes the one in run.json).
    The report is not written here: `harness.run(..., report=True)` or `harness report RUN_DIR` does it.
    `backend`: any object with the contract of harness.backends.base.Backend (the caller closes it);
    None builds the offline vLLM engine from `model` and `engine_options` (and closes it).
    `suite` ({task: [strategy, ...]}) gives each task its own strategies; no tasks, strategies or suite
    runs the default suite (harness/runs/defaults.py).
    After the batch, `latency_probe` items per (task, strategy) are sent `probe_concurrency` at a time
    (default DEFAULT_PROBE, one at a time) and `latency_calibration` requests per model calibrate the
    latency model (default: harness/runs/latency_model.py's rule; `latency_probe=0` turns both off unless a
    calibration size is given): see harness/runs/probe.py, harness/runs/latency_model.py and docs/measures.md.
    split_groups=False lets a chunk mix groups (no throughput cost then; for the bench's on/off row)."""
    from ..report.pricing import check_hourly
    from .latency_model import calibrate, latency_plan
    from .probe import check_probe_args, run_probe
    from .suite import plan_strategies, resolve_plan

    latency_probe, latency_calibration = latency_plan(latency_probe, latency_calibration)
    check_probe_args(latency_probe, probe_concurrency)
    check_hourly(hourly_usd)

    suite_plan = resolve_plan(tasks, strategies, suite, data_dir=data_dir)
    fmt = default_format(model, backend)  # completion for a model without a chat template (docs/tasks.md)
    suite_plan = [(t.with_default_format(fmt), s) for t, s in suite_plan]
    task_objs, strat_objs = [t for t, _ in suite_plan], plan_strategies(suite_plan)
    for _, strats in suite_plan:
        check_distinct(strats)
    with _gc_paused():  # only new objects here, no cycles: see _gc_paused
        # renders every prompt: validates
        units = [u for task, strats in suite_plan for u in build_units([task], strats, limit=limit, seed=seed)]
    if not units:
        raise ConfigError("nothing to run", field="--task", fix="give at least one task with examples")

    run_dir = run_folder(out, run_id)
    old_meta = check_run_folder(run_dir)
    journal = Journal(run_dir / "journal.jsonl")
    previous = journal.read()  # refuses a journal line that is not a unit, before any engine starts

    from ..report.pricing import cost_function, hourly_price
    cost_fn = cost_function(price_table) if price_table else None
    own_engine = backend is None
    if backend is None:
        from ..backends.vllm import VLLMBackend
        backend = VLLMBackend(model, **(engine_options or {}))
    engine = check_backend(backend)
    if model_name:
        engine.model_name = model_name
    model_name = engine.model_name
    hourly = hourly_price(price_table, model_name, hourly_usd)
    plan = plan_units(units, previous, seed=seed, model=model_identity(engine), retry_errors=retry_errors)
    if plan.conflicts and not force:
        raise plan.refusal(run_dir)
    pending = plan.pending
    try:
        if cache:
            from ..backends.cache import CachedBackend, RequestCache
            backend = CachedBackend(engine, RequestCache(cache_dir))
        started = _needs_engine(pending, backend if cache else None)  # all done or cached: no engine start
        if started:
            from .procs import check_main_guard, exit_on_signal, guard, start_note
            if _spawns_engine(engine):
                check_main_guard()
            guard()  # no engine process outlives this one (docs/faults.md)
            try:
                with exit_on_signal(*start_note(run_dir, resume=bool(old_meta))):
                    engine.start()  # an engine that cannot start fails here, before the run folder is touched
            except KeyboardInterrupt:  # Ctrl-C from Python (the CLI exits in exit_on_signal)
                if old_meta:  # a resume stopped while its engine started: the folder is as it was
                    raise RunInterrupted(run_dir) from None
                raise
        stats_before = engine.stats()
        # Remote backends journal smaller chunks: a crash there costs money, and batching buys less.
        chunk_size = chunk_size or engine.preferred_chunk_size or DEFAULT_CHUNK
        written: list[dict] = []  # this call's journal entries, so finalize need not read them back

        run_dir.mkdir(parents=True, exist_ok=True)
        meta = _run_meta(run_dir, task_objs, strat_objs, engine, old=old_meta, plan=suite_plan, limit=limit, seed=seed,
                         data_dir=data_dir, chunk_size=chunk_size, model_spec=_model_spec(model, engine),
                         resumed=len(units) - len(pending), pending=len(pending), total=len(units))
        meta["engine_started"] = started
        meta["format"] = {"default": fmt, "used": sorted({u.requests[0].format for u in units if u.requests})}
        meta["pricing"] = {"hourly_usd": hourly, "hourly_source": None if hourly is None else
                           ("--hourly-usd" if hourly_usd is not None else "price table"),
                           "token_prices": {k: v.model_dump() for k, v in (price_table or {}).items()
                                            if k in (model_name, "*")}}
        write_json_atomic(run_dir / "run.json", meta)
        info = meta.get("model_info") or {}
        flops_per_token = 2 * info["active_params"] if info.get("active_params") else None

        t0 = time.perf_counter()
        bar = progress_bar(len(pending), progress)  # harness/runs/progress.py
        interrupted = False
        # The units (every rendered request) live for the whole run; without this, each full garbage
        # collection during the engine's calls walks all of them again.
        gc.freeze()
        try:
            for chunk in _chunks(pending, max(1, chunk_size), by_group=split_groups):
                reqs = [r for u in chunk for r in u.requests]
                t_call = time.perf_counter()
                comps = backend.generate(reqs)
                call_s = time.perf_counter() - t_call
                bounds = list(_bounds(chunk))
                fresh = sum(1 for a, b in bounds if not all(c.cached for c in comps[a:b]))
                # the chunk's engine time, split equally over its units (one group's units when split_groups)
                share = call_s / fresh if fresh and split_groups else None
                entries = []
                for u, (a, b) in zip(chunk, bounds):
                    ident = plan.identity[id(u)]
                    entries.append(make_row(u, comps[a:b], run_id=meta["run_id"], model=model_name,
                                            backend=meta["backend"], cost_fn=cost_fn, flops_per_token=flops_per_token,
                                            identity=ident, label=plan.labels.get(ident["id"]), engine_s=share,
                                            hourly_usd=hourly))
                journal.append(entries)
                written.extend(entries)
                if bar is not None:
                    bar.update(len(chunk), len(reqs))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            gc.unfreeze()
            if bar is not None:
                bar.close()
        meta["wall_s"] = round(time.perf_counter() - t0, 3)  # the batch; the probe below is apart
        if latency_probe and started and not interrupted:
            try:
                meta["probe"] = run_probe(engine, units, latency_probe, concurrency=probe_concurrency,
                                          journal=Journal(run_dir / "probe.jsonl"), run_id=meta["run_id"],
                                          model=model_name)
            except KeyboardInterrupt:
                interrupted = True
        if latency_calibration != 0 and started and not interrupted:
            try:
                meta["calibration"] = calibrate(engine, units, [e["p"] for e in previous + written],
                                                latency_calibration, journal=Journal(run_dir / "calibration.jsonl"),
                                                run_id=meta["run_id"], model=model_name)
            except KeyboardInterrupt:
                interrupted = True
        with deferred():  # from here a first signal waits until the engine is closed and the files written
            meta["cache"] = {"enabled": cache, "dir": str(backend.cache.folder) if cache else None}
            meta["engine_stats"] = stats_delta(stats_before, engine.stats())
            if own_engine:
                engine.close()  # an engine this call started ends here, cleanly (no shutdown warnings)
            # an interrupted append may have left entries in the journal that `written` lacks: read it back then
            preds = finalize(run_dir, meta, complete=not interrupted,
                             entries=None if interrupted else previous + written)
    finally:
        if own_engine:
            engine.close()  # also when the run failed or was stopped before its loop (idempotent)
    if interrupted:
        raise RunInterrupted(run_dir)
    preds.attrs["run_dir"] = str(run_dir)
    return preds


def _spawns_engine(engine: Any) -> bool:
    """True for the offline vLLM engine (its processes start by re-importing the main script)."""
    return type(engine).__name__ == "VLLMBackend"


def _model_spec(model: str | None, engine: Any) -> str | None:
    """The --model value a resume passes again: 'bundled' for the offline engine's default, a local
    folder made absolute, else what was given (None for a server: it names its model)."""
    if model is None:
        return "bundled" if _spawns_engine(engine) else None
    return engine.model_path if os.path.isdir(model) else model


def _needs_engine(pending: list[Unit], cached) -> bool:
    """False when nothing is pending, or (with the request cache) every pending request is cached."""
    if not pending:
        return False
    if cached is None:
        return True
    from ..backends.cache import request_key

    keys = [request_key(cached.key_identity, r) for u in pending for r in u.requests]
    return len(cached.cache.get_many(keys)) < len(set(keys))


def _bounds(chunk: list[Unit]):
    """(start, end) of each unit's completions in its chunk's flat list."""
    i = 0
    for u in chunk:
        yield i, i + len(u.requests)
        i += len(u.requests)


class RunInterrupted(KeyboardInterrupt):
    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def finalize(run_dir: Path, meta: dict, *, complete: bool, entries: list[dict] | None = None) -> pd.DataFrame:
    """Build the parquet and CSV files from the journal (idempotent)."""
    from ..report.stats import majk_table, summarize

    with _gc_paused():  # reading and de-duplicating the entries make only acyclic objects, too
        if entries is None:
            entries = Journal(run_dir / "journal.jsonl").read()
        else:  # the journal's own rule: a later entry for a unit replaces an earlier one
            entries = list({entry_id(e): e for e in entries}.values())
        preds, samples = frames_from_journal(entries)
    from .latency_model import add_estimates
    from .results import probes_from_journal
    probes = probes_from_journal(run_dir / "probe.jsonl")
    preds = add_estimates(run_dir, meta, preds, probes)  # the calibrated latency model's est_* columns
    write_frame_atomic(preds, run_dir / "predictions.parquet")
    write_frame_atomic(samples, run_dir / "samples.parquet")
    write_frame_atomic(probes, run_dir / "probes.parquet")
    write_frame_atomic(summarize(preds, probes), run_dir / "summary.csv")
    if not samples.empty:
        write_frame_atomic(majk_table(preds, samples), run_dir / "majk.csv")
    from ..report.variance import variance_table
    variance = variance_table(preds)
    if not variance.empty:  # only runs with several exemplar draws / orders / sampling seeds
        write_frame_atomic(variance, run_dir / "variance.csv")
    meta["status"] = "complete" if complete else "interrupted"
    meta["finished_at"] = _now()
    meta["rows"] = len(preds)
    write_json_atomic(run_dir / "run.json", meta)
    return preds


def _run_meta(run_dir: Path, tasks, strategies, backend, *, old: dict, **config) -> dict:
    from ..backends.models import model_info

    path = backend.model_path
    try:
        info = model_info(path) if path else {}
    except Exception:  # introspection is best effort for remote / hub models
        info = {}
    resumes = list(old.get("resumes", []))
    if old:
        resumes.append({"at": _now(), "already_done": config["resumed"], "pending": config["pending"]})
    settings = backend.engine_settings()
    return {
        "run_id": old.get("run_id", run_dir.name), "created_at": old.get("created_at", _now()), "status": "running",
        "command": " ".join(sys.argv) if sys.argv and "harness" in sys.argv[0] else None,
        "config": {"tasks": [t.name for t in tasks], "task_files": [str(t.file) for t in tasks],
                   "strategies": [s.spec for s in strategies], "model": backend.model_name,
                   "model_spec": config["model_spec"], "model_path": backend.model_path,
                   "limit": config["limit"], "seed": config["seed"],
                   "data_dir": str(config["data_dir"]) if config["data_dir"] else None,
                   "chunk_size": config["chunk_size"], **suite_config(config["plan"], strategies)},
        "templates": templates_used(tasks, strategies),
        "backend": settings.get("backend", type(backend).__name__), "engine": settings,
        "model_info": info, "versions": versions(), "units": config["total"], "resumes": resumes,
    }


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while the harness builds a large batch of acyclic records
    (rendered units, result rows, frames): each full collection would walk all of them again, which
    cost a fifth of the harness's own time at 100k examples (bench P5). Reference counting still frees
    everything; any cycle made meanwhile is collected once the collector is back on. Never around an
    engine call."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resume_args(run_dir: str | Path, *, explicit: dict) -> dict:
    """The run arguments recorded in a run folder's run.json, for `harness run --resume RUN_DIR`:
    tasks, strategies, limit, seed, data folder, chunk size and, for the offline engine
    (explicit["backend_kind"] "vllm" or absent), the model and its display name.
    Flags given explicitly on the command line win (for example a new --chunk-size)."""
    d = Path(run_dir)
    meta_path = d / "run.json"
    if not meta_path.is_file():
        raise ConfigError("not a run folder (no run.json)", where=str(d), field="--resume",
                          fix="pass a folder written by harness run")
    try:
        cfg = json.loads(meta_path.read_text(encoding="utf-8"))["config"]
        cfg["task_files"], cfg["strategies"]  # noqa: B018 - both must be there
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"run.json is not a run record ({type(exc).__name__}: {exc})", where=str(meta_path),
                          field="--resume", fix="resume a folder written by harness run") from None
    out = {"out": str(d), "tasks": explicit.get("tasks") or cfg["task_files"],
           "strategies": explicit.get("strategies") or cfg["strategies"],
           "limit": explicit.get("limit") or cfg.get("limit"), "seed": cfg.get("seed", 0),
           "data_dir": explicit.get("data_dir") or cfg.get("data_dir"),
           "chunk_size": explicit.get("chunk_size") or cfg.get("chunk_size")}
    if cfg.get("suite") and not (explicit.get("tasks") or explicit.get("strategies")):
        files = dict(zip(cfg["tasks"], cfg["task_files"]))
        out.update(tasks=(), strategies=(), suite={files.get(t, t): ss for t, ss in cfg["suite"].items()})
    if explicit.get("model") is None and explicit.get("backend_kind", "vllm") == "vllm":
        if cfg.get("model_spec"):  # the offline engine: the same model, under the same name
            out["model"] = cfg["model_spec"]
        if cfg.get("model"):
            out["model_name"] = cfg["model"]  # the display name the rows already carry
    return out
