"""Answer extraction and normalization: model text -> a canonical answer string, or None.

Pure functions, one per answer type. They handle the formats the bundled model really produces:
"The answer is 42.", "Answer: B", "**Answer:** (B)", "#### 42", "$1,234.50", "yes." and trailing chatter.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence

ANSWER_IS = re.compile(
    r"(?:the\s+(?:final\s+)?answer\s+is|answer\s*[:=]|####|final\s+answer\s*[:=]?|therefore,?|so,?)\s*:?\s*(.+)",
    re.IGNORECASE)
NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize_number(text: Any) -> str | None:
    """'$1,234.50' -> '1234.5'; '18' -> '18'; '-3.0' -> '-3'. None if not a number."""
    if text is None:
        return None
    s = str(text).strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    d = d.normalize()
    if d == d.to_integral_value():
        return str(int(d))
    return format(d, "f")


def extract_number(text: str) -> str | None:
    """The number after 'the answer is' / 'Answer:' / '####' when present, else the last number."""
    for m in reversed(list(ANSWER_IS.finditer(text))):
        nums = NUMBER.findall(m.group(1))
        if nums:
            return normalize_number(nums[0])
    nums = NUMBER.findall(text)
    return normalize_number(nums[-1]) if nums else None


def extract_choice(text: str, labels: Sequence[str] = ("A", "B", "C", "D", "E")) -> str | None:
    """A choice letter: '(B)', 'Answer: B', 'B.' or 'B)' at the start, or a lone letter."""
    alt = "|".join(re.escape(label) for label in labels)
    pats = [
        rf"answer\s+is\s*:?\s*\(?\**\s*({alt})\b",
        rf"answer\s*:\s*\**\s*\(?({alt})\b",
        rf"^\s*\(?({alt})[\).:]?(?:\s|$)",
        rf"\(({alt})\)",
        rf"\b({alt})\b",
    ]
    for p in pats:
        m = re.search(p, text, re.IGNORECASE | re.MULTILINE) if p.startswith("answer") else re.search(p, text, re.MULTILINE)
        if m:
            return m.group(1).upper() if len(m.group(1)) == 1 else m.group(1)
    return None


def extract_label(text: str, labels: Sequence[str]) -> str | None:
    """One of `labels` (case-insensitive): after 'answer is' when present, else the first label mentioned."""
    lowered = [label.lower() for label in labels]
    alt = "|".join(re.escape(label) for label in sorted(lowered, key=len, reverse=True))
    word = rf"(?<![\w])({alt})(?![\w])"
    for m in reversed(list(ANSWER_IS.finditer(text))):
        hit = re.search(word, m.group(1).lower())
        if hit:
            return labels[lowered.index(hit.group(1))]
    hit = re.search(word, text.lower())
    return labels[lowered.index(hit.group(1))] if hit else None


def normalize_text(text: Any) -> str | None:
    if text is None:
        return None
    s = str(text).strip().strip("\"'`*").strip().rstrip(".!").strip().strip("\"'`*")
    return s.lower() or None


def extract_text(text: str) -> str | None:
    """Free text: what follows 'the answer is', quotes stripped; else the last non-empty line."""
    matches = list(ANSWER_IS.finditer(text))
    if matches:
        cand = matches[-1].group(1).strip().splitlines()[0]
        quoted = re.search(r"[\"“']([^\"”']+)[\"”']", cand)
        return normalize_text(quoted.group(1) if quoted else cand)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return normalize_text(lines[-1]) if lines else None


def extract_json(text: str) -> tuple[Any, bool]:
    """The first JSON object in the text (code fences allowed). Returns (object or None, json_valid)."""
    s = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", s, re.DOTALL)
    if fence:
        s = fence.group(1).strip()
    try:
        return json.loads(s), True
    except (json.JSONDecodeError, ValueError):
        pass
    start = s.find("{")
    while start != -1:
        depth = 0
        in_str = esc = False
        for i in range(start, len(s)):
            ch = s[i]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    try:
                        return json.loads(s[start:i + 1]), True
                    except (json.JSONDecodeError, ValueError):
                        break
        start = s.find("{", start + 1)
    return None, False


def extract(answer_type: str, text: str, *, labels: Sequence[str] = (), pattern: str | None = None) -> str | None:
    """Dispatch on the task's answer type; `pattern` (a regex with one group) overrides the default."""
    if pattern:
        m = re.search(pattern, text, re.IGNORECASE | re.DOTALL)
        if not m:
            return None
        text = m.group(1) if m.groups() else m.group(0)
        if answer_type == "text":
            return normalize_text(text)
    if answer_type == "number":
        return extract_number(text)
    if answer_type == "choice":
        return extract_choice(text, labels or ("A", "B", "C", "D", "E"))
    if answer_type == "label":
        return extract_label(text, labels)
    if answer_type == "text":
        return extract_text(text)
    if answer_type == "json":
        obj, ok = extract_json(text)
        return json.dumps(obj, sort_keys=True) if ok else None
    raise ValueError(f"unknown answer type {answer_type!r}")


def normalize_gold(answer_type: str, gold: Any) -> str | None:
    if answer_type == "number":
        return normalize_number(gold)
    if answer_type == "json":
        return json.dumps(gold, sort_keys=True) if not isinstance(gold, str) else json.dumps(json.loads(gold), sort_keys=True)
    if answer_type == "text":
        return normalize_text(gold)
    return None if gold is None else str(gold)
