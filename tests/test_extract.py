"""Extraction precedence, word boundaries and normalization (unit tests; the audit set is in
tests/test_extraction_audit.py)."""
from __future__ import annotations

import random

import pytest

from harness.scoring.extract import CUES, extract, extract_with_rule, normalize_number


def test_the_issue_examples():
    assert extract("number", "The answer is 18.\nLet me know if you have a reason to doubt 20") == "18"
    assert extract("label", "yes…\nAlso no one", labels=["yes", "no"]) == "yes"
    assert extract("text", "somehow responsible for it") == "somehow responsible for it"


def test_first_explicit_statement_wins_and_final_kind_outranks_plain():
    assert extract_with_rule("number", "The answer is 3. Later: the answer is 4.") == ("3", "answer_is")
    assert extract_with_rule("number", "The answer is 5. #### 9").answer == "9"
    assert extract_with_rule("number", "The answer is 14, and \\boxed{11}.").answer == "11"
    assert extract_with_rule("number", "Answer: 2\nThe final answer is 6").answer == "6"
    assert extract_with_rule("number", "no statement, 3 then 4") == ("4", "last_number")


WORDS = ["also", "somehow", "soap", "season", "answered", "answers", "therefore", "reasons", "person", "isotope",
         "known", "nobody", "noah", "yesterday", "eyes", "notice", "canon", "finally", "incorrectly", "boxed",
         "Let's", "Apple", "Because", "Dog", "Each", "Cat"]


@pytest.mark.parametrize("seed", range(5))
def test_no_cue_word_or_label_matches_inside_another_word(seed):
    """Random sentences built from words that CONTAIN cue words and labels (so, answer, no, yes, A-E)
    give no explicit statement, no label and no letter."""
    rng = random.Random(seed)
    for _ in range(200):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
        text = text + rng.choice(["", ".", "!"])
        for _, _, pat in CUES:
            m = pat.search(text)
            assert m is None or not text[max(0, m.start() - 1):m.start()].isalpha(), (text, m)
        assert extract("label", text, labels=["yes", "no"]) is None, text
        assert extract("choice", text, labels=list("ABCDE")) is None, text
        assert extract_with_rule("number", text).rule == "none"


@pytest.mark.parametrize("text,want", [
    ("$1,234.50", "1234.5"), ("\u22123", "-3"), ("-3", "-3"), ("3", "3"), ("3.50", "3.5"), ("3.0", "3"),
    ("18 dollars", "18"), ("1\u202f234", "1234"), ("1\u00a0234\u00a0567", "1234567"), ("\u20ac5", "5"),
    ("\uff14\uff12", "42"), ("50%", "50"), ("-$4", "-4"), ("007", "7"), (".5", "0.5"), ("12 and 13", None),
    ("abc", None), (None, None), (3, "3"), (2.50, "2.5"), (True, None), ("1e5", "100000"), (1e20, "1" + "0" * 20),
    (0.1, "0.1"), (float("nan"), None),
])
def test_normalize_number(text, want):
    assert normalize_number(text) == want


def test_a_range_dash_is_not_a_minus_sign():
    assert extract("number", "It takes 3-4 days") == "4"
    assert extract("number", "from 3 - 4") == "4"
    assert extract("number", "x = -4") == "-4"


def test_yes_no_case_and_canonical_labels():
    assert extract("label", "YES.", labels=["yes", "no"]) == "yes"
    assert extract("label", "The answer is Positive", labels=["positive", "negative"]) == "positive"
    assert extract("label", "it is lisbon", labels=["Lisbon", "Oslo"]) == "Lisbon"


def test_strict_mode_accepts_only_the_explicit_form():
    for t in ("18 eggs", "Yes.", "B. sunlight", "Paris"):
        kind = {"18 eggs": "number", "Yes.": "label", "B. sunlight": "choice", "Paris": "text"}[t]
        flex = extract_with_rule(kind, t, labels=["yes", "no"] if kind == "label" else list("ABCD"))
        strict = extract_with_rule(kind, t, labels=["yes", "no"] if kind == "label" else list("ABCD"), mode="strict")
        assert flex.answer is not None and strict == (None, "none")
    assert extract("number", "#### 18", mode="strict") == "18"
    with pytest.raises(ValueError):
        extract("number", "1", mode="loose")


def test_a_task_pattern_comes_first_and_falls_back_to_the_type_rules():
    assert extract_with_rule("number", "Result=[42] the answer is 7", pattern=r"\[(\d+)\]") == ("42", "pattern")
    assert extract_with_rule("number", "the answer is 7", pattern=r"\[(\d+)\]") == ("7", "answer_is")
