"""Scoring: (task, example, prediction) -> the scored columns of one row, through the task's entry in
the scorer table (harness/scoring/scorers.py). Pure functions."""
from __future__ import annotations

from typing import Any

from .extract import normalize_gold
from ..records import Example, Prediction
from .scorers import SCORERS, ScoreInput


def score(task, example: Example, pred: Prediction) -> dict[str, Any]:
    """Returns gold, correct (None when the request errored: an error is never a wrong answer),
    extract_rule, and the columns of the task's scorer. With `extraction: both` the strict answer is
    scored too (correct_strict)."""
    gold = normalize_gold(task.spec.answer_type, example.gold)
    row: dict[str, Any] = {"gold": gold}
    if pred.extra.get("error"):
        row["correct"] = None
        return row
    scorer = SCORERS[task.scorer]
    params = task.scorer_params
    schema = task.json_schema if task.scorer == "json_fields" else None
    rule = pred.extra.get("extract_rule")
    row["extract_rule"] = rule
    res = scorer.fn(ScoreInput(pred.answer, pred.output, example.gold, gold, rule, params, schema))
    row.update(res)
    row["correct"] = bool(res["correct"])
    if "answer_strict" in pred.extra:
        strict = pred.extra["answer_strict"]
        rule_s = pred.extra.get("extract_rule_strict")
        res_s = scorer.fn(ScoreInput(strict, pred.output, example.gold, gold, rule_s, params, schema))
        row.update(answer_strict=strict, extract_rule_strict=rule_s, correct_strict=bool(res_s["correct"]))
    if "answer_norm" in pred.extra:
        row["correct_norm"] = pred.extra["answer_norm"] == gold
    return row
