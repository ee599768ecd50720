"""harness/scoring/judge.py: verdict parsing against the schema, threshold, the panel's vote (never
dependent on judge order) and pairwise outcomes in both orders."""
from __future__ import annotations

import itertools
import json
import random

import pytest

from harness.scoring.judge import (DEFAULT_SCHEMA, NO_MAJORITY, judge_columns, majority, pairwise_outcome,
                                   parse_verdict, verdict_pass)


def verdict(score, passed, reasoning="r"):
    return json.dumps({"reasoning": reasoning, "score": score, "pass": passed})


@pytest.mark.parametrize("text,why", [
    ("Score: 5. Pass.", "not JSON"),
    ('{"reasoning": "r", "score": 6, "pass": true}', "schema: score"),
    ('{"reasoning": "r", "score": 3}', "'pass' is a required property"),
    ('{"reasoning": "r", "score": 3, "pass": true, "extra": 1}', "Additional properties"),
    ('{"reasoning": "r", "score": "4", "pass": true}', "schema: score"),
    (json.dumps({"reasoning": "x" * 401, "score": 3, "pass": True}), "schema: reasoning"),
    (None, "no output"),
])
def test_parse_verdict_refuses_what_the_schema_refuses(text, why):
    v, err = parse_verdict(text, DEFAULT_SCHEMA)
    assert v is None and why in err


def test_threshold_decides_pass_when_given():
    v, _ = parse_verdict(verdict(3, True))
    assert verdict_pass(v) is True
    assert verdict_pass(v, threshold=4) is False and verdict_pass(v, threshold=3) is True
    assert verdict_pass(None, threshold=3) is None
    cols = judge_columns([verdict(3, True)], threshold=4)
    assert cols["correct"] is False and cols["judge_pass_field"] is True and cols["judge_score"] == 3.0


def brute_majority(votes):
    """Written apart: count each label; a label wins with more than half of all judges and no failure."""
    if None in votes:
        return NO_MAJORITY
    for label, value in (("pass", True), ("fail", False)):
        if sum(v is value for v in votes) * 2 > len(votes):
            return label
    return NO_MAJORITY


def test_majority_matches_brute_force_and_never_depends_on_order():
    for size in range(1, 6):
        for votes in itertools.product([True, False, None], repeat=size):
            expected = brute_majority(list(votes))
            for perm in itertools.permutations(votes):
                assert majority(perm) == expected


def test_panel_columns_are_order_free_on_random_outputs():
    rng = random.Random(0)
    outputs = [verdict(4, True), verdict(2, False), verdict(5, True), "not json", verdict(9, True), None]
    for _ in range(120):
        panel = [rng.choice(outputs) for _ in range(rng.choice([2, 3, 4]))]
        threshold = rng.choice([None, 3])
        ref = judge_columns(panel, threshold=threshold)
        for perm in itertools.permutations(panel):
            got = judge_columns(list(perm), threshold=threshold)
            for k in ("correct", "judge_verdict", "judge_pass", "judge_parse_ok", "no_majority"):
                assert got[k] == ref[k], (panel, perm, k)
            assert got["judge_score"] == pytest.approx(ref["judge_score"]) if ref["judge_score"] else True


def test_one_failed_judge_or_an_even_split_is_no_majority():
    three = judge_columns([verdict(5, True), "garbage", verdict(4, True)])
    assert three["judge_verdict"] == NO_MAJORITY and three["correct"] is False and three["judge_parse_ok"] is False
    assert three["judge_parse_error"].startswith("not JSON")
    split = judge_columns([verdict(5, True), verdict(1, False)])
    assert split["judge_verdict"] == NO_MAJORITY and split["judge_parse_ok"] is True
    errored = judge_columns([verdict(5, True), verdict(5, True), verdict(5, True)], errors=[None, "timeout", None])
    assert errored["judge_verdict"] == NO_MAJORITY and "timeout" in errored["judge_parse_error"]
    assert judge_columns([verdict(5, True), verdict(1, False), verdict(4, True)])["judge_verdict"] == "pass"


def test_pairwise_outcome_in_both_orders():
    table = {("first", "second"): ("A", False), ("second", "first"): ("B", False), ("tie", "tie"): ("tie", False),
             ("first", "first"): ("tie", True), ("second", "second"): ("tie", True),
             ("first", "tie"): ("tie", True), ("tie", "first"): ("tie", True), (None, "first"): ("tie", False)}
    for (ab, ba), expected in table.items():
        assert pairwise_outcome(ab, ba) == expected
        # swapping which output is called A mirrors the outcome
        mirrored = {"A": "B", "B": "A", "tie": "tie"}[expected[0]]
        assert pairwise_outcome(ba, ab)[0] == mirrored
