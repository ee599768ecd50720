"""A unit of work and its row: one (task, strategy, example) expanded into requests, and its completions
reduced, scored and laid out as one predictions row (+ sample rows) for the journal."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

from ..backends.chat import message_dicts
from ..records import Completion, Example, Request, Sampling
from ..scoring.scoring import score
from ..strategy.strategies import Strategy
from ..task.tasks import Task


@dataclass(frozen=True)
class Unit:
    task: Task
    strategy: Strategy
    example: Example
    requests: tuple[Request, ...]


def build_units(tasks: Sequence[Task], strategies: Sequence[Strategy], *, limit: int | None,
                seed: int, select: Callable[[str, str, str], bool] | None = None) -> list[Unit]:
    """Every (task, strategy, example) unit, rendered; `select(task, strategy spec, example id)`
    keeps only some (before rendering: the race runs one look's items at a time)."""
    units = []
    for task in tasks:
        examples = task.examples[: (limit or task.spec.limit or len(task.examples))]
        for strat in strategies:
            variant = task.variant(strat.params["template"]) if "template" in strat.params else task
            for ex in examples:
                if select is None or select(task.name, strat.spec, ex.id):
                    units.append(Unit(variant, strat, ex, tuple(strat.expand(variant, ex, run_seed=seed))))
    return units


def default_format(model: str | None, backend: Any = None) -> str:
    """completion for a local model folder whose tokenizer has no chat template, else chat."""
    from ..backends.models import has_chat_template, resolve_model

    try:
        path = backend.model_path if backend is not None else resolve_model(model)[0]
    except Exception:  # a bad --model is reported by the engine start, in its own words
        return "chat"
    return "completion" if path and has_chat_template(path) is False else "chat"


_encode_prompt = json.JSONEncoder(ensure_ascii=False).encode  # = json.dumps(x, ensure_ascii=False), built once


@lru_cache(maxsize=256)
def _decoding_json(sampling: Sampling) -> str:
    """The row's `decoding` column; a run has few distinct Sampling values, so it is serialized once each."""
    return json.dumps(sampling.as_dict(), sort_keys=True)


def _sum_cached(comps: Sequence[Completion]) -> int | None:
    got = [x.cached_prompt_tokens for x in comps if x.cached_prompt_tokens is not None]
    return sum(got) if got else None


def make_row(unit: Unit, comps: Sequence[Completion], *, run_id: str, model: str, backend: str,
             cost_fn=None, flops_per_token: float | None = None, identity: dict | None = None,
             label: str | None = None, engine_s: float | None = None, hourly_usd: float | None = None) -> dict:
    """Reduce a unit's completions to a prediction, score it, and lay it out as one row (+ sample rows).
    `engine_s` is the unit's equal share of its chunk's measured engine time (None when answered from
    the request cache); with `hourly_usd` the row's cost is that share x the hourly price.
    A row answered from the cache keeps no time: a replayed time is not a measurement of this run."""
    task, strat, ex = unit.task, unit.strategy, unit.example
    spec = label or strat.spec
    pred = strat.reduce(task, ex, comps)
    scored = score(task, ex, pred)
    c = comps[0]
    req = unit.requests[0]
    cached = all(x.cached for x in comps)
    # a unit of several requests (calibrate=true's content-free prompt) pays for all of their prompts
    ptoks = None if any(x.prompt_tokens is None for x in comps) else sum(x.prompt_tokens for x in comps)
    cached_toks = _sum_cached(comps)
    ctoks = sum(c.completion_tokens) if c.completion_tokens else (0 if c.error is None else None)
    row: dict[str, Any] = {
        "run_id": run_id, "task": task.name, "strategy": spec, "model": model,
        "example_id": ex.id, "template": task.spec.template, "template_hash": task.template.hash,
        "backend": backend, "answer_mode": strat.answer_mode(task), "format": req.format,
        "guided": req.output_type is not None,
        "prompt_tokens": ptoks, "completion_tokens": ctoks, "cached_prompt_tokens": cached_toks,
        "batch_latency_s": None if cached else c.latency_s, "batch_ttft_s": None if cached else c.ttft_s,
        "batch_itl_s": None if cached else c.itl_s, "engine_s_share": None if cached else engine_s,
        "finish_reason": c.finish_reasons[0] if c.finish_reasons else None,
        "output": pred.output, "answer": pred.answer, "parse_ok": pred.parse_ok, "error": c.error,
        "cached": cached, "n_samples": len(c.texts) or None,
        "decoding": _decoding_json(req.sampling),
        "prompt": _encode_prompt(message_dicts(req.messages) if req.prompt is None
                                 else [{"role": "completion", "content": req.prompt}]),
    }
    row.update(scored)
    for k in ("votes", "agreement", "tie_rule", "answer_norm"):
        if k in pred.extra:
            row[k] = pred.extra[k]
    if hourly_usd is not None:
        row["cost_usd"] = None if engine_s is None or cached else engine_s * hourly_usd / 3600
    elif cost_fn is not None and ptoks is not None:
        row["cost_usd"] = cost_fn(model, ptoks, cached_toks or 0, ctoks or 0)
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
