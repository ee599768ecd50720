"""The extraction audit set: hand-labelled model outputs (real outputs of the bundled model from gsm8k,
coin_flip, arc_easy, last_letter_concat and multistep_arithmetic runs, plus written traps), each with the
answer a careful reader takes as the model's stated answer. Extraction must agree on every one; the
test prints the accuracy per rule that fired (run with -s to see it)."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from harness.scoring.extract import extract_with_rule

AUDIT = Path(__file__).parent / "data" / "extraction_audit.jsonl"
CASES = [json.loads(line) for line in AUDIT.read_text(encoding="utf-8").splitlines() if line.strip()]


def _run(case: dict):
    return extract_with_rule(case["type"], case["output"], labels=case.get("labels", ()),
                             choices=case.get("choices", ()), mode=case.get("mode", "flexible"))


def test_the_audit_set_is_large_and_covers_every_type_and_the_real_runs():
    assert len(CASES) >= 150
    assert len({c["id"] for c in CASES}) == len(CASES)
    types = Counter(c["type"] for c in CASES)
    assert all(types[t] >= 15 for t in ("number", "label", "choice", "text")), types
    real = Counter(c["id"].split("/")[1] for c in CASES if c["id"].startswith("real/"))
    assert all(real[t] >= 10 for t in ("gsm8k", "coin_flip", "arc_easy")), real
    assert sum(1 for c in CASES if c.get("mode") == "strict") >= 8


def test_extraction_agrees_with_every_hand_label():
    per_rule: dict[str, list[bool]] = defaultdict(list)
    wrong = []
    for c in CASES:
        got = _run(c)
        ok = got.answer == c["expected"]
        per_rule[got.rule].append(ok)
        if not ok:
            wrong.append(f"{c['id']}: expected {c['expected']!r}, got {got.answer!r} by {got.rule}")
    print("\nextraction audit: accuracy per rule")
    for rule, oks in sorted(per_rule.items()):
        print(f"  {rule:16s} {sum(oks):4d}/{len(oks):<4d} {100 * sum(oks) / len(oks):6.1f} %")
    print(f"  {'all':16s} {len(CASES) - len(wrong):4d}/{len(CASES):<4d}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("text", [c["output"] for c in CASES if c["type"] == "number" and "\n" not in c["output"]][:20])
def test_strict_never_answers_where_flexible_has_no_statement(text):
    flexible = extract_with_rule("number", text)
    strict = extract_with_rule("number", text, mode="strict")
    if flexible.rule == "last_number":
        assert strict.answer is None
    else:
        assert strict.answer == flexible.answer
