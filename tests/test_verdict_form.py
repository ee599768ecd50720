"""The judge's verdict constraint: a regex with fixed separators and a bound on its tokens.

On the bundled model 4 of 1,000 guided verdicts under the JSON-schema constraint ran to max_tokens and
did not parse (scripts/judge_measure.py): vLLM's xgrammar JSON grammar lets any whitespace stand between
fields, and the engine-wide switch would change every other guided task. These tests compile what the
judge sends the way vLLM's xgrammar backend does (no engine) and check that (1) no whitespace beyond the
separators is admitted — the JSON-schema constraint the judge sent before admitted it, so this fails on
the old code; (2) every accepted verdict fits in `longest` tokens, checked against a brute-force
longest instance; (3) the regex and the schema agree on random verdicts (jsonschema is the oracle).
"""
from __future__ import annotations

import json
import random
import re

import pytest

from harness.errors import ConfigError
from harness.runs.judging import Rubric
from harness.scoring.judge import DEFAULT_SCHEMA, PAIRWISE_SCHEMA, parse_verdict
from harness.scoring.verdict_form import verdict_form
from harness.task.tasks import load_task

xgr = pytest.importorskip("xgrammar")


def matcher(output_type):
    """What vLLM's xgrammar backend builds from a request's structured_outputs (backend_xgrammar.py:
    compile_json_schema with any whitespace for json, compile_regex for regex), over a byte-per-char
    vocabulary so any string can be fed."""
    vocab = [chr(i) for i in range(32, 127)] + ["\n", "\t"]
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo(vocab))
    if output_type.kind == "json":
        compiled = compiler.compile_json_schema(output_type.spec, any_whitespace=True)
    else:
        compiled = compiler.compile_regex(output_type.spec)
    return xgr.GrammarMatcher(compiled)


def accepts(output_type, text: str) -> bool:
    m = matcher(output_type)
    return all(m.accept_string(ch) for ch in text) and m.is_completed()


def prefix_ok(output_type, text: str) -> bool:
    m = matcher(output_type)
    return all(m.accept_string(ch) for ch in text)


@pytest.mark.parametrize("task_name", ["capital_judged", "capital_pairwise", "explain_why"])
def test_the_judge_constraint_admits_no_whitespace_loop(task_name):
    ot = Rubric(load_task(task_name)).output_type
    first_key = next(iter(Rubric(load_task(task_name)).schema["properties"]))
    # the looping kind of output seen on the engine: newlines before the first key, spaces before a comma
    assert not prefix_ok(ot, "{\n\n\n")
    assert not prefix_ok(ot, '{"%s": "x"   ' % first_key)
    assert not prefix_ok(ot, '{"%s"  :' % first_key)


def test_every_accepted_default_verdict_fits_the_bound():
    rx, longest = verdict_form(DEFAULT_SCHEMA)
    ot = Rubric(load_task("capital_judged")).output_type
    assert ot.kind == "regex" and ot.spec == rx
    n = DEFAULT_SCHEMA["properties"]["reasoning"]["maxLength"]
    biggest = json.dumps({"reasoning": "~" * n, "score": 5, "pass": False})
    assert accepts(ot, biggest) and len(biggest.encode()) == longest
    assert not prefix_ok(ot, json.dumps({"reasoning": "~" * (n + 1)})[:-1])  # one character over maxLength
    assert longest <= load_task("capital_judged").spec.judge.max_tokens  # a default judge always finishes
    # brute force over every enum/int/bool value: the longest instance is the bound
    lengths = [len(json.dumps({"reasoning": "~" * n, "score": s, "pass": p}).encode())
               for s in range(1, 6) for p in (True, False)]
    assert max(lengths) == longest


def random_schema(rng: random.Random) -> dict:
    props = {}
    for i in range(rng.randint(1, 4)):
        kind = rng.choice(["string", "integer", "boolean", "enum"])
        if kind == "string":
            lo = rng.randint(0, 3)
            props[f"k{i}"] = {"type": "string", "minLength": lo, "maxLength": lo + rng.randint(0, 12)}
        elif kind == "integer":
            lo = rng.randint(-20, 20)
            props[f"k{i}"] = {"type": "integer", "minimum": lo, "maximum": lo + rng.randint(0, 30)}
        elif kind == "boolean":
            props[f"k{i}"] = {"type": "boolean"}
        else:
            props[f"k{i}"] = {"enum": rng.sample(["first", "second", "tie", 1, 2, None, True], rng.randint(1, 4))}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def random_value(rng: random.Random, prop: dict):
    if "enum" in prop:
        return rng.choice(prop["enum"])
    if prop["type"] == "string":
        return "".join(rng.choice('ab Z~[]{}!-"\\é') for _ in range(rng.randint(0, prop["maxLength"] + 2)))
    if prop["type"] == "integer":
        return rng.randint(prop["minimum"] - 3, prop["maximum"] + 3)
    return rng.choice([True, False, 0])


def test_regex_and_schema_agree_on_random_verdicts():
    """The regex accepts exactly the schema-valid verdicts written with json.dumps' separators whose
    strings are printable ASCII without quote or backslash (the one restriction it adds), and each
    accepted one is within the bound."""
    rng = random.Random(7)
    checked = accepted = 0
    for _ in range(150):
        schema = random_schema(rng)
        rx, longest = verdict_form(schema)
        for _ in range(20):
            obj = {k: random_value(rng, p) for k, p in schema["properties"].items()}
            text = json.dumps(obj)
            valid = parse_verdict(text, schema)[0] is not None
            plain = all(not isinstance(v, str) or re.fullmatch(r'[ !#-\[\]-~]*', v) for v in obj.values())
            assert (re.fullmatch(rx, text) is not None) == (valid and plain), (schema, text)
            if valid and plain:
                accepted += 1
                assert len(text.encode()) <= longest
            checked += 1
    assert checked == 3000 and accepted > 300


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": [], "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}}, "required": ["a"],
     "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3, "pattern": "x+"}},
     "required": ["a"], "additionalProperties": False},
])
def test_schemas_outside_the_subset_keep_the_json_constraint(schema):
    assert verdict_form(schema) is None


def test_max_tokens_below_the_longest_verdict_is_one_line_error():
    task = load_task("capital_judged")
    judge = task.spec.judge.model_copy(update={"max_tokens": 100})
    rubric = Rubric(type(task)(**{**task.__dict__, "spec": task.spec.model_copy(update={"judge": judge})}))
    with pytest.raises(ConfigError) as err:
        rubric.output_type
    assert "judge.max_tokens" in str(err.value) and "244" in str(err.value)


def test_pairwise_form_is_bounded_too():
    rx, longest = verdict_form(PAIRWISE_SCHEMA)
    n = PAIRWISE_SCHEMA["properties"]["reasoning"]["maxLength"]
    assert longest == len(json.dumps({"reasoning": "~" * n, "winner": "second"}).encode())
    assert re.fullmatch(rx, json.dumps({"reasoning": "it is", "winner": "tie"}))
