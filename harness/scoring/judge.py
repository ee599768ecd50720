"""Model-graded scoring, the pure part: a judge's raw output -> its verdict -> the row's columns.

The judge's model call happens at the runs level (harness/runs/judging.py); this module never calls a
model. It parses verdicts against their JSON schema, turns a score into pass/fail with a threshold,
votes a panel, and reads a pairwise comparison made in both orders.

Default verdict schema (guided decoding makes the engine's output satisfy it):

    {"reasoning": str (at most 200 characters), "score": int 1..5, "pass": bool}

Choices where the issue was silent (docs/judge.md):
- with a `threshold`, pass = score >= threshold and the judge's own `pass` field is kept as
  `judge_pass_field`; without one, pass is the `pass` field;
- a panel needs every judge to return a verdict and a strict majority of the panel: one judge that
  fails (no parseable verdict), or an even split, gives `no_majority` (never a tie-break by judge order);
  a `no_majority` row is not correct (like a parse failure) and is counted apart (`no_majority_rate`);
- pairwise: a preference that changes when the two outputs swap places is a tie, and is `flipped`.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

REASONING_MAX = 200  # with the fixed separators, a default verdict takes at most 244 tokens (verdict_form.py)

DEFAULT_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "maxLength": REASONING_MAX},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "pass": {"type": "boolean"},
    },
    "required": ["reasoning", "score", "pass"],
    "additionalProperties": False,
}

PAIRWISE_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "maxLength": REASONING_MAX},
        "winner": {"enum": ["first", "second", "tie"]},
    },
    "required": ["reasoning", "winner"],
    "additionalProperties": False,
}

PASS, FAIL, NO_MAJORITY = "pass", "fail", "no_majority"


def parse_verdict(text: str | None, schema: Mapping[str, Any] = DEFAULT_SCHEMA) -> tuple[dict | None, str | None]:
    """The judge's output -> (verdict, None), or (None, why it is not a verdict). The whole output must
    be one JSON object valid against the schema (guided decoding guarantees it; free text often is not).

    >>> parse_verdict('{"reasoning": "ok", "score": 4, "pass": true}')
    ({'reasoning': 'ok', 'score': 4, 'pass': True}, None)
    >>> parse_verdict('Score: 4')[1]
    'not JSON: Expecting value at char 0'
    """
    if text is None:
        return None, "no output"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at char {exc.pos}"
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(dict(schema)).iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(root)"
        return None, f"schema: {where}: {errors[0].message}"[:200]
    return obj, None


def verdict_pass(verdict: Mapping[str, Any] | None, threshold: int | None = None) -> bool | None:
    """pass/fail of one parsed verdict: score >= threshold when a threshold is given, else its `pass`
    field (None when there is no verdict)."""
    if verdict is None:
        return None
    if threshold is not None:
        return int(verdict["score"]) >= threshold
    return bool(verdict["pass"])


def majority(passes: Sequence[bool | None]) -> str:
    """A panel's decision from its judges' pass/fail (None = the judge gave no verdict): "pass" or
    "fail" when every judge gave a verdict and more than half agree, else "no_majority". The result is
    a function of the multiset of votes, so the judges' order can never change it.

    >>> majority([True, True, False]), majority([True, None, True]), majority([True, False])
    ('pass', 'no_majority', 'no_majority')
    """
    votes = list(passes)
    if not votes or any(v is None for v in votes):
        return NO_MAJORITY
    yes = sum(1 for v in votes if v)
    if 2 * yes > len(votes):
        return PASS
    if 2 * (len(votes) - yes) > len(votes):
        return FAIL
    return NO_MAJORITY


def judge_columns(outputs: Sequence[str | None], *, schema: Mapping[str, Any] = DEFAULT_SCHEMA,
                  threshold: int | None = None, errors: Sequence[str | None] | None = None) -> dict[str, Any]:
    """The scored columns of one row from its judges' raw outputs (one per panel member, in panel order):
    correct, judge_verdict (pass / fail / no_majority), judge_score (the mean of the parsed
    scores), judge_pass (the single judge's, or the panel's when it decided), judge_parse_ok (every
    judge gave a verdict), judge_reasoning (the first judge's), judge_parse_error."""
    errors = list(errors) if errors is not None else [None] * len(outputs)
    parsed = []
    why = []
    for text, err in zip(outputs, errors):
        if err:
            parsed.append(None)
            why.append(f"error: {err}")
            continue
        v, e = parse_verdict(text, schema)
        parsed.append(v)
        why.append(e)
    passes = [verdict_pass(v, threshold) for v in parsed]
    decision = majority(passes) if len(parsed) > 1 else (NO_MAJORITY if passes[0] is None else
                                                         (PASS if passes[0] else FAIL))
    scores = [v["score"] for v in parsed if v is not None and "score" in v]
    first = parsed[0] or {}
    row: dict[str, Any] = {
        "correct": decision == PASS,
        "judge_verdict": decision,
        "judge_pass": None if decision == NO_MAJORITY else decision == PASS,
        "judge_score": float(sum(scores) / len(scores)) if scores else None,
        "judge_parse_ok": all(v is not None for v in parsed),
        "judge_reasoning": first.get("reasoning"),
        "judge_parse_error": next((w for w in why if w), None),
        "no_majority": decision == NO_MAJORITY,
    }
    if threshold is not None and len(parsed) == 1 and parsed[0] is not None and "pass" in parsed[0]:
        row["judge_pass_field"] = bool(parsed[0]["pass"])
    return row


# -- pairwise -----------------------------------------------------------------------------------
def pairwise_outcome(first_ab: str | None, first_ba: str | None) -> tuple[str, bool]:
    """A comparison made in both orders -> (outcome, flipped).

    `first_ab` is the judge's "first" / "second" / "tie" with A shown first, `first_ba` with B shown
    first (None: no verdict). The outcome is "A" or "B" only when both orders prefer the same output;
    otherwise "tie". `flipped` is True when the two orders gave different answers (the judge preferred
    a position, not an output, at least once).

    >>> pairwise_outcome("first", "second"), pairwise_outcome("first", "first")
    (('A', False), ('tie', True))
    """
    ab = {"first": "A", "second": "B", "tie": "tie"}.get(first_ab or "")
    ba = {"first": "B", "second": "A", "tie": "tie"}.get(first_ba or "")
    if ab is None or ba is None:
        return "tie", False
    if ab == ba:
        return ab, False
    return "tie", True
