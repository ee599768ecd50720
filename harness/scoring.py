"""Scorers: (task, example, prediction) -> the scored columns of one row. Pure functions."""
from __future__ import annotations

import json
from typing import Any

from .extract import extract_json, normalize_gold
from .records import Example, Prediction


def score(task, example: Example, pred: Prediction) -> dict[str, Any]:
    """Returns gold, correct (None when the request errored: an error is never a wrong answer),
    and the extra metrics of the task's scorer."""
    gold = normalize_gold(task.spec.answer_type, example.gold)
    row: dict[str, Any] = {"gold": gold}
    if pred.extra.get("error"):
        row["correct"] = None
        return row
    if task.scorer == "json_fields":
        row.update(score_json(pred.output, example.gold, task.json_schema))
        row["correct"] = bool(row["field_em"])
        return row
    row["correct"] = pred.answer is not None and pred.answer == gold
    if "answer_norm" in pred.extra:
        row["correct_norm"] = pred.extra["answer_norm"] == gold
    return row


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}"""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def _norm(v: Any) -> str:
    return str(v).strip().lower()


def score_json(output: str, gold: Any, schema: dict | None) -> dict[str, Any]:
    """json_valid, schema_valid, field_em (all fields match), field_f1 (over flattened fields)."""
    obj, ok = extract_json(output)
    res: dict[str, Any] = {"json_valid": ok, "schema_valid": False, "field_em": False, "field_f1": 0.0}
    if not ok:
        return res
    if schema is not None:
        from jsonschema import Draft202012Validator
        res["schema_valid"] = Draft202012Validator(schema).is_valid(obj)
    else:
        res["schema_valid"] = isinstance(obj, dict)
    gold_obj = json.loads(gold) if isinstance(gold, str) else gold
    g = {k: _norm(v) for k, v in flatten(gold_obj).items()}
    p = {k: _norm(v) for k, v in flatten(obj).items()} if isinstance(obj, dict) else {}
    match = sum(1 for k, v in p.items() if g.get(k) == v)
    prec = match / len(p) if p else 0.0
    rec = match / len(g) if g else 0.0
    res["field_f1"] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    res["field_em"] = p == g
    return res
