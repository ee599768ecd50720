"""The judge pass: after a chunk is generated and before it is journaled, every row of a task scored
by `scorer: judge` is graded by its judge model(s).

    rows ──► judge Requests (the rubric rendered with the item, the output and the gold; the verdict's
             JSON schema as a guided output type) ──► one batched generate per judge backend, through the
             request cache ──► harness.scoring.judge.judge_columns (pure) ──► the row's judge_* columns

Judge calls go through the request cache like generation calls, so a re-run or a resume answers them
from disk; their tokens and time are counted apart (judge_prompt_tokens, judge_completion_tokens,
judge_latency_s), never in the row's own prompt_tokens / completion_tokens / cost.

A judge model is `bundled` (reuses the run's engine when the run is on the bundled model), `run` (the
model being evaluated, whatever its backend), a local model folder (its own offline engine), `NAME@URL`
(an OpenAI-compatible server: OpenAIBackend(URL, model=NAME)), or a name given to `run(judges={...})`
(a backend object: tests, or a backend built in code).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Mapping, Sequence

from ..backends.chat import message_dicts
from ..errors import ConfigError
from ..records import Completion, Message, OutputType, Request, Sampling
from ..scoring.judge import DEFAULT_SCHEMA, PAIRWISE_SCHEMA, judge_columns
from ..scoring.verdict_form import verdict_form
from ..task.tasks import Task
from ..task.templates import load_template

JUDGE_COLUMNS = ("judge_model", "judge_prompt", "judge_output", "judge_prompt_tokens", "judge_completion_tokens",
                 "judge_latency_s", "judge_cached", "judge_error")


def judge_schema(task: Task) -> dict:
    """The verdict's JSON schema: the task's `judge.schema` (inline or a file), else the default."""
    spec = task.spec.judge
    if spec.schema_ is None:
        return PAIRWISE_SCHEMA if spec.mode == "pairwise" else DEFAULT_SCHEMA
    from ..task.task_schema import load_schema

    return load_schema(spec.schema_, task)


@dataclass
class Rubric:
    """A task's judge, ready to render: its template, schema and sampling."""

    task: Task

    @cached_property
    def template(self):
        return load_template(self.task.spec.judge.rubric, self.task.template_folders)

    @cached_property
    def schema(self) -> dict:
        schema = judge_schema(self.task)
        threshold = self.task.spec.judge.threshold
        if threshold is not None and "score" not in schema.get("properties", {}):
            raise ConfigError("judge.threshold needs a 'score' field in the verdict schema", where=str(self.task.file),
                              field="judge.threshold", fix="remove the threshold or add an integer 'score'")
        return schema

    @cached_property
    def output_type(self) -> OutputType | None:
        """The constraint: the verdict's regex form with fixed separators where the schema compiles
        (scoring/verdict_form.py; then max_tokens must hold its longest form), else the JSON schema.
        Key order is kept: the verdict's reasoning comes before its score when the schema says so."""
        spec = self.task.spec.judge
        if not spec.guided:
            return None
        form = verdict_form(self.schema)
        if form is None:
            return OutputType("json", json.dumps(self.schema))
        if form[1] > spec.max_tokens:
            raise ConfigError(f"judge.max_tokens {spec.max_tokens} is below the verdict's longest form ({form[1]} "
                              "tokens), so a long verdict would be cut and not parse", where=str(self.task.file),
                              field="judge.max_tokens", fix=f"set max_tokens to at least {form[1]}, or lower the "
                              "schema's maxLength")
        return OutputType("regex", form[0])

    def request(self, key: str, variables: Mapping[str, Any]) -> Request:
        spec = self.task.spec.judge
        parts = self.template.render(variables)
        user = "\n\n".join(parts[s] for s in ("instructions", "constraints", "input") if parts[s])
        messages = ((Message("system", parts["context"]),) if parts["context"] else ()) + (Message("user", user),)
        sampling = Sampling(temperature=spec.temperature, max_tokens=spec.max_tokens, seed=0)
        return Request(key=key, messages=messages, sampling=sampling, output_type=self.output_type)


def variables(task: Task, example, row: Mapping[str, Any]) -> dict[str, Any]:
    """The rubric's variables: the task's fields, the model's whole `output`, its extracted `answer`,
    and the item's `gold` (a reference answer or fact)."""
    return {**example.fields, "output": row.get("output") or "", "answer": row.get("answer"), "gold": example.gold}


class Judges:
    """Judge model specs -> backends, resolved once per run and wrapped in the request cache. Backends
    this object builds (a folder's engine, a server client) are closed by `close()`; the run's own and
    the given ones are not."""

    def __init__(self, *, run_backend: Any, run_model_spec: str | None, given: Mapping[str, Any] | None = None,
                 cache: Any = None) -> None:
        self.run_backend, self.run_model_spec = run_backend, run_model_spec
        self.given = dict(given or {})
        self.cache = cache
        self._built: dict[str, Any] = {}
        self._own: list[Any] = []

    def uses_run_engine(self, spec: str) -> bool:
        return spec not in self.given and (spec == "run" or (spec == "bundled" and self.run_model_spec == "bundled"))

    def backend(self, spec: str) -> Any:
        if self.uses_run_engine(spec):
            return self.run_backend  # already behind the run's request cache
        if spec not in self._built:
            if spec in self.given:
                raw = self.given[spec]
            else:
                raw = self._build(spec)
                self._own.append(raw)
            if self.cache is not None:
                from ..backends.cache import CachedBackend

                raw = CachedBackend(raw, self.cache)
            self._built[spec] = raw
        return self._built[spec]

    @staticmethod
    def _build(spec: str, where: str | None = None) -> Any:
        if "@" in spec:
            name, _, url = spec.partition("@")
            if not name or not url.startswith(("http://", "https://")):
                raise ConfigError(f"judge model '{spec}' is not NAME@URL", where=where, field="judge.model",
                                  fix="write the server's model name, '@', and its base URL (http://host:port/v1)")
            from ..backends.openai import OpenAIBackend

            return OpenAIBackend(url, model=name)
        if spec == "bundled" or os.path.isdir(spec):
            from ..backends.vllm import VLLMBackend

            return VLLMBackend(None if spec == "bundled" else spec, use_tqdm=False)
        raise ConfigError(f"unknown judge model '{spec}'", where=where, field="judge.model",
                          fix="use bundled, run, a local model folder, NAME@URL, or a name passed in judges={...}")

    def close(self) -> None:
        for b in self._own:
            b.close()
        self._own.clear()


def check_judges(tasks: Sequence[Task], judges: Judges) -> None:
    """Render-free checks before anything runs: the rubric loads, the schema is valid, every judge model
    resolves to a kind we know."""
    for t in tasks:
        if t.spec.judge is None:
            continue
        r = Rubric(t)
        if t.examples:  # render once now: a rubric with a misspelled variable fails before the engine starts
            ex = t.examples[0]
            extra = {"first": "", "second": ""} if t.spec.judge.mode == "pairwise" else {}
            r.request("check", {**variables(t, ex, {"output": "", "answer": None}), **extra})
        if t.spec.judge.calibration:
            calibration_source(t)
        for spec in t.spec.judge.models:
            if not (spec in judges.given or judges.uses_run_engine(spec)):
                _check_spec(spec, str(t.file))


def _check_spec(spec: str, where: str) -> None:
    """A judge model spec we can build (one-line ConfigError otherwise); builds nothing."""
    if spec == "bundled" or os.path.isdir(spec):
        return
    name, at, url = spec.partition("@")
    if at and name and url.startswith(("http://", "https://")):
        return
    Judges._build(spec, where)  # raises the one-line error that says what is wrong


def judge_rows(items: Sequence[tuple[Task, Any, dict]], judges: Judges) -> None:
    """Grade rows in place. `items`: (task, example, row) for every row to grade (rubric mode, no
    generation error). All requests to one judge backend go in one batched call."""
    rubrics: dict[int, Rubric] = {}
    calls: dict[str, list[tuple[int, int, Request]]] = {}  # judge spec -> (row index, panel position, request)
    for i, (task, ex, row) in enumerate(items):
        rubric = rubrics.setdefault(id(task), Rubric(task))
        req = rubric.request(f"judge:{row.get('unit_id', i)}", variables(task, ex, row))
        row["judge_prompt"] = json.dumps(message_dicts(req.messages), ensure_ascii=False)
        models = task.spec.judge.models
        for pos, spec in enumerate(models):
            # a model listed twice samples with another seed (used at temperature > 0); the seed depends on
            # the model's own repeats, never on its place in the panel, so the order cannot matter
            repeat = models[:pos].count(spec)
            r = req if not repeat else replace(req, sampling=replace(req.sampling, seed=repeat))
            calls.setdefault(spec, []).append((i, pos, r))
    answers: dict[tuple[int, int], Completion] = {}
    for spec, todo in calls.items():
        comps = judges.backend(spec).generate([r for _, _, r in todo])
        for (i, pos, _), c in zip(todo, comps):
            answers[(i, pos)] = c
    for i, (task, _, row) in enumerate(items):
        models = task.spec.judge.models
        comps = [answers[(i, pos)] for pos in range(len(models))]
        outputs = [c.texts[0] if c.texts else None for c in comps]
        row.update(judge_columns(outputs, schema=rubrics[id(task)].schema, threshold=task.spec.judge.threshold,
                                 errors=[c.error for c in comps]))
        single = len(models) == 1
        lat = [c.latency_s for c in comps if c.latency_s is not None and not c.cached]
        row.update({
            "judge_model": models[0] if single else json.dumps(list(models)),
            "judge_output": outputs[0] if single else json.dumps(outputs, ensure_ascii=False),
            "judge_prompt_tokens": sum(c.prompt_tokens or 0 for c in comps),
            "judge_completion_tokens": sum(sum(c.completion_tokens) for c in comps),
            "judge_latency_s": max(lat) if lat else None,
            "judge_cached": all(c.cached for c in comps),
            "judge_error": next((c.error for c in comps if c.error), None),
        })


def judge_entries(entries: Sequence[dict], units: Sequence[Any], judges: Judges) -> None:
    """The runner's hook: grade the journal entries of one chunk (entries[i] is units[i]'s row)."""
    for u, e in zip(units, entries):  # pairwise tasks are judged after the run; the row keeps the rule's verdict
        if u.task.spec.judge is not None and u.task.spec.judge.mode == "pairwise" and "rule_correct" in e["p"]:
            e["p"]["correct"] = e["p"]["rule_correct"]
    items = [(u.task, u.example, e["p"]) for u, e in zip(units, entries)
             if u.task.spec.judge is not None and u.task.spec.judge.mode == "rubric" and not e["p"].get("error")]
    if items:
        judge_rows(items, judges)


# -- pairwise ---------------------------------------------------------------------------------------
def judge_pairs(entries: Sequence[dict], tasks: Sequence[Task], judges: Judges):
    """Pairwise mode (`judge: {mode: pairwise}`): for each task, each pair of its strategies (A = the
    first in sorted order) and each item both answered without error, the judge compares the two outputs
    twice, A shown first and then B shown first (rubric variables `first` and `second`). One row per
    item and pair: the winner of each order, the outcome (A, B, or tie when the orders disagree) and
    `flipped`. The first judge model of the task decides (no panel in pairwise mode)."""
    import pandas as pd

    from ..scoring.judge import pairwise_outcome, parse_verdict

    cols = ["task", "model", "strategy_a", "strategy_b", "example_id", "winner_ab", "winner_ba", "outcome",
            "flipped", "judge_parse_ok", "judge_prompt_tokens", "judge_completion_tokens", "judge_cached"]
    rows = [e["p"] for e in entries]
    out, todo = [], []
    for task in tasks:
        spec = task.spec.judge
        if spec is None or spec.mode != "pairwise":
            continue
        rubric = Rubric(task)
        examples = {ex.id: ex for ex in task.examples}
        by = {}
        for r in rows:
            if r["task"] == task.name and not r.get("error"):
                by.setdefault((r["model"], r["strategy"]), {})[r["example_id"]] = r
        keys = sorted(by)
        for i, (model, a) in enumerate(keys):
            for model_b, b in keys[i + 1:]:
                if model_b != model:
                    continue
                for ex_id in sorted(set(by[(model, a)]) & set(by[(model, b)])):
                    ra, rb = by[(model, a)][ex_id], by[(model, b)][ex_id]
                    base = {**examples[ex_id].fields, "gold": examples[ex_id].gold} if ex_id in examples else {}
                    req_ab = rubric.request(f"pair:{ex_id}:ab", {**base, "first": ra["output"], "second": rb["output"]})
                    req_ba = rubric.request(f"pair:{ex_id}:ba", {**base, "first": rb["output"], "second": ra["output"]})
                    todo.append((task, {"task": task.name, "model": model, "strategy_a": a, "strategy_b": b,
                                        "example_id": ex_id}, req_ab, req_ba, rubric.schema))
    by_judge: dict[str, list] = {}
    for item in todo:
        by_judge.setdefault(item[0].spec.judge.models[0], []).append(item)
    for spec, items in by_judge.items():
        comps = judges.backend(spec).generate([r for it in items for r in (it[2], it[3])])
        for k, (task, row, _, _, schema) in enumerate(items):
            c_ab, c_ba = comps[2 * k], comps[2 * k + 1]
            v_ab = parse_verdict(c_ab.texts[0] if c_ab.texts else None, schema)[0]
            v_ba = parse_verdict(c_ba.texts[0] if c_ba.texts else None, schema)[0]
            w_ab, w_ba = (v_ab or {}).get("winner"), (v_ba or {}).get("winner")
            outcome, flipped = pairwise_outcome(w_ab, w_ba)
            out.append({**row, "winner_ab": w_ab, "winner_ba": w_ba, "outcome": outcome, "flipped": flipped,
                        "judge_parse_ok": v_ab is not None and v_ba is not None,
                        "judge_prompt_tokens": (c_ab.prompt_tokens or 0) + (c_ba.prompt_tokens or 0),
                        "judge_completion_tokens": sum(c_ab.completion_tokens) + sum(c_ba.completion_tokens),
                        "judge_cached": c_ab.cached and c_ba.cached})
    return pd.DataFrame(out, columns=cols)


def pairwise_summary(pairs) -> list[dict]:
    """Per task, model and strategy pair: the flip rate (Wilson CI) and the preference counts with the
    exact sign test over the items that did not tie (harness.stats.judge)."""
    from ..stats.judge import flip_rate, preference_test

    out = []
    if pairs is None or pairs.empty:
        return out
    for key, g in pairs.groupby(["task", "model", "strategy_a", "strategy_b"], sort=True):
        parsed = g[g["judge_parse_ok"]]
        out.append({**dict(zip(["task", "model", "strategy_a", "strategy_b"], key)),
                    "unparsed": int((~g["judge_parse_ok"]).sum()),
                    **flip_rate(parsed["flipped"].tolist()), **preference_test(g["outcome"].tolist())})
    return out


# -- calibration ------------------------------------------------------------------------------------
def calibration_source(task: Task):
    """The task's `judge.calibration` as a data source (SourceSpec), ConfigError in one line if malformed."""
    from pydantic import ValidationError

    from ..task.tasks import SourceSpec

    try:
        return SourceSpec.model_validate(task.spec.judge.calibration)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"]
        raise ConfigError(f"bad calibration source: {msg}", where=str(task.file), field="judge.calibration",
                          fix="give {path: FILE} (or a generator) whose rows hold the fields, gold, output, label")


def calibrate(entries: Sequence[dict], tasks: Sequence[Task], judges: Judges):
    """For each task whose judge names a calibration set: judge its hand-labelled answers (one batched
    call, cached), then per strategy and model θ̂ = the judge's pass rate on the run's rows corrected with
    the q0, q1 measured on the labels, with the plug-in interval (harness.stats.judge). Returns
    (per-item DataFrame, summary rows)."""
    import pandas as pd

    from ..stats.judge import corrected_accuracy, judge_quality
    from ..task.task_data import load_rows

    items, labels, summary = [], [], []
    for task in tasks:
        spec = task.spec.judge
        if spec is None or spec.mode != "rubric" or not spec.calibration:
            continue
        rows = load_rows(calibration_source(task), file=task.file, data_dir=task.data_dir, role="judge.calibration")
        for i, r in enumerate(rows):
            if "output" not in r or "label" not in r:
                raise ConfigError(f"calibration row {i + 1} lacks 'output' or 'label'", where=str(task.file),
                                  field="judge.calibration", fix="give every row the answer (output) and its label")
            ex = task._to_example(r, i, "calibration")
            items.append((task, ex, {"output": str(r["output"]), "unit_id": f"cal:{ex.id}"}))
            labels.append(bool(r["label"]) if not isinstance(r["label"], str)
                          else r["label"].strip().lower() in ("true", "yes", "1", "pass", "correct"))
    if not items:
        return pd.DataFrame(), []
    judge_rows(items, judges)
    cal = pd.DataFrame([{"task": t.name, "example_id": ex.id, "label": lab, "judge_verdict": row["judge_verdict"],
                         "judge_score": row["judge_score"], "judge_parse_ok": row["judge_parse_ok"]}
                        for (t, ex, row), lab in zip(items, labels)])
    run_rows = pd.DataFrame([e["p"] for e in entries])
    for task_name, c in cal.groupby("task"):
        d = c[c["judge_verdict"].isin(["pass", "fail"])]
        jv, gold = (d["judge_verdict"] == "pass").to_numpy(), d["label"].astype(bool).to_numpy()
        q = judge_quality(jv, gold)
        mine = run_rows[(run_rows["task"] == task_name) & run_rows["judge_verdict"].isin(["pass", "fail"])] \
            if not run_rows.empty and "judge_verdict" in run_rows else pd.DataFrame()
        for (model, strat), g in (mine.groupby(["model", "strategy"]) if not mine.empty else []):
            res = corrected_accuracy((g["judge_verdict"] == "pass").to_numpy(), jv, gold)
            summary.append({"task": task_name, "model": model, "strategy": strat, "calibration_items": len(d),
                            "kappa": q.kappa, **res})
    return cal, summary


def after_generation(entries: Sequence[dict], tasks: Sequence[Task], judges: Judges, run_dir) -> dict:
    """The judge's work that needs every row of the run: pairwise comparisons (pairwise.csv) and the
    calibration set (judge_calibration.csv). Returns what run.json records ({} when neither applies)."""
    from .results import write_frame_atomic

    meta: dict[str, Any] = {}
    if any(t.spec.judge and t.spec.judge.mode == "pairwise" for t in tasks):
        pairs = judge_pairs(entries, tasks, judges)  # both orders; cached like the rest
        write_frame_atomic(pairs, run_dir / "pairwise.csv")
        meta["pairwise"] = pairwise_summary(pairs)
    if any(t.spec.judge and t.spec.judge.calibration for t in tasks):
        cal, meta["judge_calibration"] = calibrate(entries, tasks, judges)
        write_frame_atomic(cal, run_dir / "judge_calibration.csv")
    return meta
