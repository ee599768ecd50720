"""The scorer table: one entry per scorer, declaring its function, the row columns it writes and the
summary aggregates computed from them. Summary, report and plots loop over this table, so a new metric
is one `Scorer(...)` entry plus its function (docs/design.md, "Scorers").

A scorer function takes a `ScoreInput` and returns the scored columns of one row: `correct` (bool),
optionally `parse_ok` (when the scorer has its own notion of "an answer could be extracted") and its
declared columns. Tasks choose a scorer in YAML (`scorer:` and `scorer_params:`).
"""
from __future__ import annotations

import importlib
import json
import math
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .extract import extract_json, extract_number_rule, normalize_number, normalize_text


@dataclass(frozen=True)
class Aggregate:
    """A summary column: the mean of a row column over the rows without an error."""

    column: str  # summary.csv column
    source: str  # predictions.parquet column
    header: str  # report header
    short: str  # terminal header
    kind: str = "rate"  # "rate" (shown as %) or "mean" (shown as a number)


@dataclass(frozen=True)
class ScoreInput:
    answer: str | None  # the extracted answer (already normalized for the answer type)
    output: str  # the model's whole output
    gold: Any  # the gold value as the data has it
    gold_norm: str | None  # the gold normalized for the answer type
    rule: str | None  # the extraction rule that fired
    params: Mapping[str, Any]
    schema: dict | None = None  # the task's JSON schema (json_fields)


@dataclass(frozen=True)
class Scorer:
    name: str
    fn: Callable[[ScoreInput], dict]
    doc: str
    columns: tuple[str, ...] = ()
    aggregates: tuple[Aggregate, ...] = ()
    answer_types: tuple[str, ...] | None = None  # None: any answer type
    params: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)  # allowed scorer_params


# -- normalization ----------------------------------------------------------------------------
_PUNCT = set(string.punctuation) | {"“", "”", "‘", "’", "…", "–", "—", "«", "»"}


def squad_normalize(s: Any) -> str:
    """SQuAD v1.1: lower case, drop punctuation and the articles a/an/the, collapse whitespace."""
    s = unicodedata.normalize("NFKC", str(s)).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _golds(gold: Any) -> list[str]:
    """A gold value may list several acceptable answers (SQuAD style)."""
    if isinstance(gold, (list, tuple)):
        return [str(g) for g in gold]
    if hasattr(gold, "tolist"):
        return [str(g) for g in gold.tolist()]
    return [str(gold)]


# -- the scorer functions ---------------------------------------------------------------------
def score_exact(x: ScoreInput) -> dict:
    return {"correct": x.answer is not None and x.answer == x.gold_norm}


def score_contains(x: ScoreInput) -> dict:
    """The gold appears in the answer as a whole word or phrase (case, punctuation and articles
    ignored). The answer is the explicit answer statement when the model made one, else the whole
    output (a free-text reply such as "The capital city of France is Paris.")."""
    fallback = x.rule is None or x.rule in ("last_line", "none")
    target = x.output if fallback else (x.answer or "")
    hay = f" {squad_normalize(target)} "
    ok = any(g_n and f" {g_n} " in hay for g_n in (squad_normalize(g) for g in _golds(x.gold)))
    return {"correct": bool(target.strip()) and ok, "parse_ok": bool(target.strip())}


def score_numeric(x: ScoreInput) -> dict:
    """|answer - gold| <= abs_tol + rel_tol * |gold| (numpy.isclose's rule, gold as the reference; the
    default 0 / 0 means equal as numbers, so 3.50 = 3.5). Parse failure: no number in the answer (or,
    when nothing was extracted, in the output)."""
    got = normalize_number(x.answer) if x.answer is not None else None
    if got is None:
        got = extract_number_rule(x.answer if x.answer is not None else x.output).answer
    gold = normalize_number(x.gold)
    if got is None or gold is None:
        return {"correct": False, "parse_ok": got is not None, "abs_error": None}
    err = abs(float(got) - float(gold))
    tol = float(x.params.get("abs_tol", 0.0)) + float(x.params.get("rel_tol", 0.0)) * abs(float(gold))
    return {"correct": err <= tol, "parse_ok": True, "abs_error": err}


def score_f1(x: ScoreInput) -> dict:
    """SQuAD token F1 (max over the gold answers); `correct` is the SQuAD exact match (equal after
    normalization). The answer is the extracted one (for text tasks: the explicit statement, else the
    last line)."""
    pred = squad_normalize(x.answer or "").split()
    best, em = 0.0, False
    for g in _golds(x.gold):
        gt = squad_normalize(g).split()
        em = em or pred == gt
        common = sum((Counter(pred) & Counter(gt)).values())
        if common:
            p, r = common / len(pred), common / len(gt)
            best = max(best, 2 * p * r / (p + r))
    return {"correct": em, "f1": best}


def score_regex(x: ScoreInput) -> dict:
    """The gold is a regular expression; correct when it matches the whole answer (case-insensitive
    unless scorer_params.case_sensitive is true)."""
    flags = 0 if x.params.get("case_sensitive") else re.IGNORECASE
    ans = x.answer if x.answer is not None else ""
    ok = any(re.fullmatch(g, ans.strip(), flags) for g in _golds(x.gold))
    return {"correct": x.answer is not None and bool(ok)}


def score_choice_letter(x: ScoreInput) -> dict:
    """The extracted choice letter equals the gold letter ('b', '(B)' and 'B.' are all B; an integer
    gold is an index: 0 -> A)."""
    gold = x.gold
    if isinstance(gold, int) and not isinstance(gold, bool):
        gold = "ABCDEFGHIJ"[gold]
    g = str(gold).strip().strip("().: ").upper()
    a = None if x.answer is None else str(x.answer).strip().strip("().: ").upper()
    return {"correct": a is not None and a == g, "parse_ok": a is not None}


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


def score_json_fields(x: ScoreInput) -> dict:
    res = score_json(x.output, x.gold, x.schema)
    return {**res, "correct": bool(res["field_em"])}


def score_user(x: ScoreInput) -> dict:
    """An opt-in scorer named by import path in the task (`scorer_params.function: pkg.mod:fn`), called
    as fn(answer, gold, output) -> bool, or a dict with 'correct' and numeric 'score'."""
    fn = load_user_function(str(x.params["function"]))
    got = fn(x.answer, x.gold, x.output)
    if isinstance(got, Mapping):
        return {"correct": bool(got.get("correct")), "user_score": got.get("score")}
    return {"correct": bool(got)}


def score_judge(x: ScoreInput) -> dict:
    """A model judge grades the output after generation (harness/runs/judging.py, then
    harness/scoring/judge.py): until then the row is not scored (correct None). With scorer_params.rule
    the rule scorer of that name scores the row too (`rule_correct`), for the judge's q0, q1 and kappa."""
    rule = x.params.get("rule")
    if not rule:
        return {"correct": None}
    res = SCORERS[rule].fn(ScoreInput(x.answer, x.output, x.gold, x.gold_norm, x.rule,
                                      dict(x.params.get("rule_params") or {}), x.schema))
    return {"correct": None, "rule_correct": bool(res["correct"])}


def _rule(v: Any) -> str:
    if v not in SCORERS or v in ("judge", "user"):
        raise ValueError(f"rule '{v}' is not a rule scorer (one of {', '.join(k for k in SCORERS if k not in ('judge', 'user'))})")
    return str(v)


def _mapping(v: Any) -> dict:
    if not isinstance(v, Mapping):
        raise ValueError("must be a mapping")
    return dict(v)


_USER: dict[str, Callable] = {}


def load_user_function(path: str) -> Callable:
    """`package.module:function` -> the function (imported once). Raises ImportError/AttributeError."""
    if path not in _USER:
        mod, _, attr = path.partition(":")
        if not mod or not attr:
            raise ImportError(f"'{path}' is not of the form package.module:function")
        fn = getattr(importlib.import_module(mod), attr)
        if not callable(fn):
            raise AttributeError(f"'{path}' is not callable")
        _USER[path] = fn
    return _USER[path]


def _nonneg(v: Any) -> float:
    x = float(v)
    if not x >= 0 or math.isinf(x):
        raise ValueError("must be a number >= 0")
    return x


def _flag(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError("must be true or false")


# -- the table --------------------------------------------------------------------------------
SCORERS: dict[str, Scorer] = {s.name: s for s in [
    Scorer("exact", score_exact, "the extracted answer equals the gold after normalization (the default)"),
    Scorer("contains", score_contains, "the gold appears as a whole word or phrase"),
    Scorer("numeric", score_numeric, "numbers equal within abs_tol / rel_tol", columns=("abs_error",),
           aggregates=(Aggregate("mean_abs_error", "abs_error", "mean |error|", "abs_err", "mean"),),
           params={"abs_tol": _nonneg, "rel_tol": _nonneg}),
    Scorer("f1", score_f1, "SQuAD token F1; correct = SQuAD exact match", columns=("f1",),
           aggregates=(Aggregate("f1_mean", "f1", "token F1", "f1", "mean"),), answer_types=("text", "label")),
    Scorer("regex", score_regex, "the gold is a pattern that must match the whole answer",
           params={"case_sensitive": _flag}),
    Scorer("choice_letter", score_choice_letter, "the extracted letter equals the gold letter",
           answer_types=("choice",)),
    Scorer("json_fields", score_json_fields, "JSON object: every field equals the gold's",
           columns=("json_valid", "schema_valid", "field_em", "field_f1"),
           aggregates=(Aggregate("json_valid_rate", "json_valid", "JSON valid", "json_ok"),
                       Aggregate("schema_valid_rate", "schema_valid", "schema valid", "schema_ok"),
                       Aggregate("field_em_rate", "field_em", "fields exact", "field_em"),
                       Aggregate("field_f1_mean", "field_f1", "field F1", "field_f1", "mean")),
           answer_types=("json",)),
    Scorer("user", score_user, "your function, by import path (scorer_params.function)", columns=("user_score",),
           aggregates=(Aggregate("user_score_mean", "user_score", "user score", "user", "mean"),),
           params={"function": str}),
    Scorer("judge", score_judge, "a model judge grades the output with a rubric (task's `judge:` block)",
           columns=("rule_correct", "judge_verdict", "judge_pass", "judge_score", "judge_parse_ok", "no_majority",
                    "judge_prompt_tokens", "judge_completion_tokens"),
           aggregates=(Aggregate("rule_accuracy", "rule_correct", "rule accuracy", "rule_acc"),
                       Aggregate("judge_score_mean", "judge_score", "judge score", "j_score", "mean"),
                       Aggregate("judge_parse_rate", "judge_parse_ok", "judge parsed", "j_parse"),
                       Aggregate("no_majority_rate", "no_majority", "no majority", "no_maj"),
                       Aggregate("judge_tokens_mean", "judge_completion_tokens", "judge tokens", "j_tok", "mean")),
           params={"rule": _rule, "rule_params": _mapping}),
]}

# Aggregates of every task, whatever its scorer: log-likelihood's length-normalized accuracy and the
# strict-extraction accuracy of tasks that ask for both modes.
COMMON_AGGREGATES = (
    Aggregate("accuracy_norm", "correct_norm", "acc_norm", "acc_norm"),
    Aggregate("accuracy_strict", "correct_strict", "acc strict", "acc_strict"),
)
COMMON_COLUMNS = ("extract_rule", "answer_strict", "correct_strict", "extract_rule_strict", "correct_norm")


def all_aggregates() -> list[Aggregate]:
    seen, out = set(), []
    for a in (*COMMON_AGGREGATES, *(a for s in SCORERS.values() for a in s.aggregates)):
        if a.column not in seen:
            seen.add(a.column)
            out.append(a)
    return out


def row_columns() -> list[str]:
    """Every row column a scorer or the extraction can write, in table order."""
    return list(dict.fromkeys([*COMMON_COLUMNS, *(c for s in SCORERS.values() for c in s.columns)]))


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a task's scorer_params. Raises KeyError (unknown key) or ValueError (bad value)."""
    allowed = SCORERS[name].params
    out = {}
    for k, v in params.items():
        if k not in allowed:
            raise KeyError(k)
        out[k] = allowed[k](v)
    if name == "user" and "function" not in out:
        raise KeyError("function")
    return out
