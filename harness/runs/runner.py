"""The runner: expand -> one batched generate per chunk -> reduce -> score -> journal -> results.

Everything is validated (tasks, templates, strategies, every request rendered) before the run folder is
touched, so bad input never damages an existing run. Completed units are journaled a chunk at a time;
a resume reuses exactly the units whose content-addressed identity (harness/runs/identity.py) is journaled.
"""
from __future__ import annotations

import gc
import os
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ..backends.base import Backend, ChunkResult, check_backend, stats_delta
from ..backends.cache import CachedBackend, RequestCache, request_key
from ..errors import BackendError, ConfigError
from ..system.procs import check_main_guard, deferred, exit_on_signal, guard, interrupted_by_signal, start_note
from ..task.splits import split_task
from .identity import check_distinct, model_identity, plan_units
from .provenance import templates_used, versions
from .results import (RESULTS_DIR, Journal, check_run_folder, entry_id, frames_from_journal, run_folder,
                      write_frame_atomic, write_json_atomic)
from .spec import SPEC_FILE_KEY, RunSpec
from .suite import plan_strategies, resolve_plan, suite_config
from .units import Unit, build_units, default_format, make_row

DEFAULT_CHUNK = 512  # requests per engine call; a run of up to this many requests is one batched call
__all__ = ["run_model", "finalize", "RunInterrupted", "DEFAULT_CHUNK", "RESULTS_DIR"]


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


def plan_run(spec: RunSpec, fmt: str, select=None) -> tuple[list, list, list[Unit]]:
    """(suite plan, strategies, units) of a spec: every task loaded, every prompt rendered (so bad input
    fails here, before any engine starts or any file is touched). `select(task, strategy, example_id)`
    keeps only some units, before they are rendered (a race's look: harness/runs/race.py)."""
    suite_plan = resolve_plan(spec.tasks, spec.strategies, spec.suite, data_dir=spec.data_dir)
    if spec.split is not None:  # one part of each task's items (harness/task/splits.py)
        suite_plan = [(split_task(t, spec.split), s) for t, s in suite_plan]
    suite_plan = [(t.with_default_format(fmt), s) for t, s in suite_plan]
    for _, strats in suite_plan:
        check_distinct(strats)
    with _gc_paused():  # only new objects here, no cycles: see _gc_paused
        units = [u for task, strats in suite_plan
                 for u in build_units([task], strats, limit=spec.limit, seed=spec.seed, select=select)]
    if not units:
        raise ConfigError("nothing to run", field="--task", fix="give at least one task with examples")
    return suite_plan, plan_strategies(suite_plan), units


def run_model(spec: RunSpec, backend: Backend, *, model: str | None, run_dir: Path | None = None,
              display_name: str | None = None, progress: bool = True, verbose: bool = False,
              judges: dict | None = None,
              select=None) -> pd.DataFrame:
    """Run the spec's tasks x strategies on one model through `backend` (the caller builds and closes it)
    and return its predictions (df.attrs['run_dir']). Units whose content-addressed identity
    (harness.runs.identity) is in the folder's journal are reused; a unit of the same task, strategy, model
    and example whose identity changed is refused (ConfigError), or with spec.force run next to the old
    one, labelled `SPEC@CONFIG`. After the batch the latency probe and the latency model's calibration run
    (harness/runs/probe.py, harness/runs/latency_model.py)."""
    from ..stats.pricing import check_hourly
    from .latency_model import latency_plan
    from .probe import check_probe_args

    check_probe_args(latency_plan(spec.latency_probe, spec.latency_calibration)[0], spec.probe_concurrency)
    check_hourly(spec.hourly_usd)
    engine = check_backend(backend)
    fmt = default_format(model, engine)  # completion for a model without a chat template (docs/tasks.md)
    suite_plan, strategies, units = plan_run(spec, fmt, select)
    run_dir = run_dir or run_folder(spec.out, spec.run_id)
    old_meta = check_run_folder(run_dir)
    journal = Journal(run_dir / "journal.jsonl")
    previous = journal.read()  # refuses a journal line that is not a unit, before any engine starts
    if display_name:
        engine.rename(display_name)
    if not verbose:
        engine.quiet()  # one progress bar: the harness's
    plan = plan_units(units, previous, seed=spec.seed, model=model_identity(engine), retry_errors=spec.retry_errors)
    if plan.conflicts and not spec.force:
        raise plan.refusal(run_dir)
    ctx = _Context(spec, engine, run_dir, old_meta, journal, previous, units, plan, suite_plan, strategies, fmt, model)
    from .judging import Judges, check_judges  # tasks with scorer: judge (harness/runs/judging.py)
    ctx.judging = Judges(run_backend=ctx.backend, run_model_spec=_model_spec(model, engine), given=judges,
                         cache=ctx.backend.cache if spec.cache else None)
    check_judges([t for t, _ in suite_plan], ctx.judging)
    try:
        return ctx.execute(progress)
    finally:
        ctx.judging.close()  # the judge engines this run started (never the run's own)


class _Context:
    """One model's run, step by step: start the engine if anything is left to send, record run.json,
    send the chunks and journal them, measure latency, write the tables. Every step is a method."""

    def __init__(self, spec, engine, run_dir, old_meta, journal, previous, units, plan, suite_plan, strategies,
                 fmt, model) -> None:
        self.spec, self.engine, self.run_dir, self.old_meta = spec, engine, run_dir, old_meta
        self.journal, self.previous, self.units, self.plan = journal, previous, units, plan
        self.suite_plan, self.strategies, self.fmt, self.model = suite_plan, strategies, fmt, model
        self.backend = CachedBackend(engine, RequestCache(spec.cache_dir)) if spec.cache else engine
        self.written: list[dict] = []  # this call's journal entries, so finalize need not read them back
        self.interrupted = False
        self.failure: BackendError | None = None  # an engine lost mid-run (the warm engine's death)

    def execute(self, progress: bool) -> pd.DataFrame:
        pending = self.plan.pending
        started = self.start(pending)
        stats_before = self.engine.stats()
        meta = self.record_meta(started)
        t0 = time.perf_counter()
        self.generate(pending, meta, progress)
        meta["wall_s"] = round(time.perf_counter() - t0, 3)  # the batch; the latency measures are apart
        if not self.interrupted:  # pairwise judging and the judge's calibration set (harness/runs/judging.py)
            from .judging import after_generation
            meta.update(after_generation(self.previous + self.written, [t for t, _ in self.suite_plan],
                                         self.judging, self.run_dir))
        if started:
            self.measure(meta)
        with deferred():  # from here a first signal waits until the files are written
            meta["engine_stats"] = stats_delta(stats_before, self.engine.stats())
            preds = finalize(self.run_dir, meta, complete=not self.interrupted,
                             entries=None if self.interrupted else self.previous + self.written)
        if self.failure is not None:  # what is journaled is kept; the same one line, with the resume command
            raise BackendError(f"{self.failure.message}; the run stopped and what was done is kept",
                               where=self.failure.where, fix=f"harness run --resume {self.run_dir}")
        if self.interrupted:
            raise RunInterrupted(self.run_dir)
        preds.attrs["run_dir"] = str(self.run_dir)
        # this spec's units (the folder may hold older ones) and those that ran now: what --watch compares
        preds.attrs["unit_ids"] = [self.plan.identity[id(u)]["id"] for u in self.units]
        preds.attrs["ran_ids"] = [self.plan.identity[id(u)]["id"] for u in self.plan.pending]
        return preds

    def start(self, pending: list[Unit]) -> bool:
        """Start the engine unless nothing is pending or (with the cache) everything pending is cached."""
        judged = any(self.judging.uses_run_engine(m) for u in pending if u.task.spec.judge
                     for m in u.task.spec.judge.models)  # the run's engine judges its rows
        if not _needs_engine(pending, self.backend if self.spec.cache else None) and not judged:
            return False
        if self.engine.spawns_processes:
            check_main_guard()
        guard()  # no engine process outlives this one (docs/faults.md)
        try:
            with exit_on_signal(*start_note(self.run_dir, resume=bool(self.old_meta))):
                self.engine.start()  # an engine that cannot start fails here, before the run folder is touched
        except KeyboardInterrupt:  # Ctrl-C from Python (the CLI exits in exit_on_signal)
            if self.old_meta:  # a resume stopped while its engine started: the folder is as it was
                raise RunInterrupted(self.run_dir) from None
            raise
        return True

    def record_meta(self, started: bool) -> dict:
        from ..stats.pricing import hourly_price

        spec, engine = self.spec, self.engine
        self.chunk_size = spec.chunk_size or engine.preferred_chunk_size or DEFAULT_CHUNK
        self.run_dir.mkdir(parents=True, exist_ok=True)
        meta = _run_meta(self.run_dir, spec, self.suite_plan, self.strategies, engine, old=self.old_meta,
                         model_spec=_model_spec(self.model, engine), chunk_size=self.chunk_size,
                         resumed=len(self.units) - len(self.plan.pending), pending=len(self.plan.pending),
                         total=len(self.units))
        meta["engine_started"] = started
        meta["format"] = {"default": self.fmt, "used": sorted({u.requests[0].format for u in self.units if u.requests})}
        table = spec.price_table()
        self.hourly = hourly_price(table, engine.model_name, spec.hourly_usd)
        meta["pricing"] = {"hourly_usd": self.hourly, "hourly_source": None if self.hourly is None else
                           ("--hourly-usd" if spec.hourly_usd is not None else "price table"),
                           "token_prices": {k: v.model_dump() for k, v in (table or {}).items()
                                            if k in (engine.model_name, "*")}}
        meta["cache"] = {"enabled": spec.cache, "dir": str(self.backend.cache.folder) if spec.cache else None}
        write_json_atomic(self.run_dir / "run.json", meta)
        return meta

    def generate(self, pending: list[Unit], meta: dict, progress: bool) -> None:
        """One engine call per chunk; each chunk's rows are journaled before the next call."""
        from ..stats.pricing import cost_function
        from .progress import Progress

        table = self.spec.price_table()
        cost_fn = cost_function(table) if table else None
        info = meta.get("model_info") or {}
        flops_per_token = 2 * info["active_params"] if info.get("active_params") else None
        bar = Progress(len(pending), sum(len(u.requests) for u in pending), enabled=progress)
        gc.freeze()  # the units live for the whole run: full collections need not walk them again
        chunks = list(_chunks(pending, max(1, self.chunk_size), by_group=self.spec.split_groups))
        try:  # one engine call per chunk; a backend of several engines answers them as each is done
            for res in self.backend.generate_chunks([r for u in chunk for r in u.requests] for chunk in chunks):
                chunk = chunks[res.index]
                self.journal_chunk(chunk, res, meta, cost_fn, flops_per_token)
                bar.update(len(chunk), sum(len(u.requests) for u in chunk))
        except BackendError as exc:  # the engine is gone: stop like an interrupt, then report it (execute)
            self.interrupted, self.failure = True, exc
        except BaseException as exc:  # a signal, also one that library code turned into another error (procs.py)
            if not interrupted_by_signal(exc):
                raise
            self.interrupted = True
        finally:
            gc.unfreeze()
            bar.close()

    def journal_chunk(self, chunk: list[Unit], res: ChunkResult, meta: dict, cost_fn, flops_per_token) -> None:
        comps, call_s = res.completions, res.seconds
        bounds = list(_bounds(chunk))
        fresh = sum(1 for a, b in bounds if not all(c.cached for c in comps[a:b]))
        # the chunk's engine time, split equally over its units (one group's units when split_groups)
        share = call_s / fresh if fresh and self.spec.split_groups else None
        entries = []
        for u, (a, b) in zip(chunk, bounds):
            ident = self.plan.identity[id(u)]
            entries.append(make_row(u, comps[a:b], run_id=meta["run_id"], model=self.engine.model_name,
                                    backend=meta["backend"], cost_fn=cost_fn, flops_per_token=flops_per_token,
                                    identity=ident, label=self.plan.labels.get(ident["id"]), engine_s=share,
                                    hourly_usd=self.hourly))
            if res.where is not None:  # which replica / node answered, and the attempt (ray.py); not a row column
                entries[-1]["w"] = res.where
        from .judging import judge_entries
        judge_entries(entries, chunk, self.judging)  # tasks with scorer: judge, before the journal
        self.journal.append(entries)
        self.written.extend(entries)

    def measure(self, meta: dict) -> None:
        """The direct latency probe and the latency model's calibration, after the batch."""
        from .latency_model import calibrate, latency_plan
        from .probe import run_probe

        probe_n, calibration = latency_plan(self.spec.latency_probe, self.spec.latency_calibration)
        name, run_id = self.engine.model_name, meta["run_id"]
        try:
            if probe_n and not self.interrupted:
                meta["probe"] = run_probe(self.engine, self.units, probe_n, concurrency=self.spec.probe_concurrency,
                                          journal=Journal(self.run_dir / "probe.jsonl"), run_id=run_id, model=name)
            if calibration != 0 and not self.interrupted:
                meta["calibration"] = calibrate(self.engine, self.units, [e["p"] for e in self.previous + self.written],
                                                calibration, journal=Journal(self.run_dir / "calibration.jsonl"),
                                                run_id=run_id, model=name,
                                                cache_folder=self.backend.cache.folder if self.spec.cache else None)
        except BackendError as exc:  # the engine lost during the latency measures: as in generate()
            self.interrupted, self.failure = True, exc
        except BaseException as exc:  # as in generate()
            if not interrupted_by_signal(exc):
                raise
            self.interrupted = True


def _model_spec(model: str | None, engine: Any) -> str | None:
    """The --model value a resume passes again: 'bundled' for the offline engine's default, a local
    folder made absolute, else what was given (None for a server: it names its model)."""
    if model is None:
        # the offline engine, started here or held by the warm engine (whose client spawns nothing)
        return "bundled" if engine.spawns_processes or engine.name in ("vllm", "ray") else None
    return engine.model_path if os.path.isdir(model) else model


def _needs_engine(pending: list[Unit], cached) -> bool:
    """False when nothing is pending, or (with the request cache) every pending request is cached."""
    if not pending:
        return False
    if cached is None:
        return True
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
    """Build the parquet files from the journal (idempotent). The summary tables are the report stage's
    (harness.reports.tables.write_tables, called by harness.api)."""
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
    meta["status"] = "complete" if complete else "interrupted"
    meta["finished_at"] = _now()
    meta["rows"] = len(preds)
    write_json_atomic(run_dir / "run.json", meta)
    return preds


def _run_meta(run_dir: Path, spec: RunSpec, plan, strategies, backend, *, old: dict, **config) -> dict:
    from ..backends.models import model_info

    path = backend.model_path
    try:
        info = model_info(path) if path else {}
    except Exception:  # introspection is best effort for remote / hub models
        info = {}
    resumes = list(old.get("resumes", []))
    if old:
        resumes.append({"at": _now(), "already_done": config["resumed"], "pending": config["pending"],
                        "command": _command()})
    tasks = [t for t, _ in plan]
    settings = backend.engine_settings()
    return {
        "run_id": old.get("run_id", run_dir.name), "created_at": old.get("created_at", _now()), "status": "running",
        "command": old.get("command") if old and old.get("command") else _command(),
        SPEC_FILE_KEY: spec.record(), "spec_sources": old.get("spec_sources") or {},
        "config": {"tasks": [t.name for t in tasks], "task_files": [str(t.file) for t in tasks],
                   "strategies": [s.spec for s in strategies], "model": backend.model_name,
                   "model_spec": config["model_spec"], "model_path": backend.model_path,
                   "limit": spec.limit, "seed": spec.seed, "data_dir": spec.data_dir, "margin": spec.margin,
                   "chunk_size": config["chunk_size"], **suite_config(plan, strategies)},
        "templates": templates_used(tasks, strategies),
        "backend": settings.get("backend", backend.name), "engine": settings,
        "model_info": info, "versions": versions(), "units": config["total"], "resumes": resumes,
    }


def _command() -> str | None:
    return " ".join(sys.argv) if sys.argv and "harness" in sys.argv[0] else None


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
