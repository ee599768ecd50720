"""Answer extraction and normalization: model text -> a canonical answer string (or None) and the rule
that produced it.

Precedence (docs/design.md, "Answer extraction"):

1. An explicit answer statement wins over any other number or label in the text: `\\boxed{X}`,
   `#### X`, "the (final/correct) answer is X", "final answer: X", "Answer: X". When there are
   several, the FIRST one that holds an answer of the task's type wins (as lm-evaluation-harness's
   strict GSM8K filter does). Rule names: `boxed`, `hashes`, `answer_is`, `final_answer`, `answer_colon`.
2. Otherwise (flexible mode only) a fallback per answer type:
   - number: the last number in the text (`last_number`);
   - label: the first label that stands alone, i.e. starts a sentence or line and ends a clause
     ("Yes.", "No, because ...", "**no**") (`lone_label`); else the only label mentioned (`only_label`);
     two different labels and none stands alone: no answer (`ambiguous`). The determiner "no" ("no one",
     "no way") is never the label no;
   - choice: a letter at the start ("B.", "(B)", "B)") (`leading_letter`); else a letter in
     parentheses (`paren_letter`); else the text of exactly one option (`choice_text`); else the one
     lone capital letter that is not the article "A" (`lone_letter`; several different: `ambiguous`).
     An echo of the option list ("A. ...\nB. ...") with no statement is no answer (`option_list`);
   - text: the last non-empty line that holds no answer cue (`last_line`).
   Strict mode stops after step 1: no explicit statement means no answer (`none`).

Every cue word and label is matched on word boundaries ("so" never matches inside "also", "L" never
inside "Let's"). Text is NFKC-normalized first (full-width digits, non-breaking spaces), and numbers are
read with thousands separators, currency signs, trailing units, a Unicode minus sign and trailing zeros
("$1,234.50" -> "1234.5", "−3" -> "-3").
"""
from __future__ import annotations

import json
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NamedTuple, Sequence

MODES = ("flexible", "strict")

# -- numbers -----------------------------------------------------------------------------------
_SEP = "[,']"  # thousands separators (no-break / narrow / thin spaces are dropped by _clean)
_CURRENCY = r"[$€£¥₹₩₽]"
NUMBER = re.compile(
    rf"(?<![\w.])(?P<sign>[-\u2212])?\s?{_CURRENCY}?\s?(?P<sign2>-)?"
    rf"(?P<num>\d{{1,3}}(?:{_SEP}\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?![\d])")
_RANGE_DASH = re.compile(r"\d\s?$")


_PLAIN = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def _clean(text: str) -> str:
    """NFKC (full-width digits -> ASCII), a Unicode minus -> '-', and thousands spaces between digit
    groups dropped first (NFKC would turn them into plain spaces)."""
    if text.isascii():
        return text
    text = re.sub(r"(?<=\d)[\u00a0\u202f\u2009](?=\d{3}(?!\d))", "", text)
    return unicodedata.normalize("NFKC", text).replace("\u2212", "-")


def normalize_number(text: Any) -> str | None:
    """'$1,234.50' -> '1234.5'; '18' -> '18'; '-3.0' -> '-3'; '18 dollars' -> '18'. None if not a number."""
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, Decimal):
        d = text
    elif isinstance(text, (int, float)):
        d = Decimal(repr(text)) if isinstance(text, float) else Decimal(text)
    else:
        s = str(text).strip()
        if not _PLAIN.fullmatch(s):  # the common case ('18', '-3.5') skips the full reading
            m = _numbers(_clean(s))
            if len(m) != 1:
                return None
            s = m[0]
        try:
            d = Decimal(s)
        except InvalidOperation:
            return None
    if not d.is_finite():
        return None
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def _numbers(text: str) -> list[str]:
    """Every number in the text as a plain decimal string ('-1234.5'), in order."""
    out = []
    for m in NUMBER.finditer(text):
        num = m.group("num").replace(",", "").replace("'", "")
        neg = m.group("sign") or m.group("sign2")
        if m.group("sign") and _RANGE_DASH.search(text[:m.start()]):
            neg = None  # "3-4" is a range, not 3 and -4
        out.append(("-" if neg else "") + num)
    return out


def _num(s: str) -> str | None:
    return normalize_number(Decimal(s))


# -- explicit answer statements -----------------------------------------------------------------
CUES = [  # (rule, tier, pattern); the answer is looked for right after the match. Tier 1 says it is final.
    ("boxed", 1, re.compile(r"\\boxed\s*\{")),
    ("hashes", 1, re.compile(r"####")),
    ("final_answer", 1, re.compile(r"\b(?:final|correct)\s+answer\b(?:\s+(?:is|was|would\s+be|will\s+be)\b)?\s*[:=]?",
                                   re.I)),
    ("answer_is", 2, re.compile(r"\b(?:the\s+)?(?:right\s+|best\s+)?answer\s+(?:is|was|would\s+be|will\s+be)\b\s*:?",
                                re.I)),
    ("answer_colon", 2, re.compile(r"\banswer\b\s*(?:\*\*|__)?\s*[:=]", re.I)),
]
_ANY_CUE = re.compile("|".join(f"(?P<{rule}>{pat.pattern})" for rule, _, pat in CUES), re.I)  # one pass
_TIER = {rule: tier for rule, tier, _ in CUES}
_CUE_HINT = re.compile(r"answer|####|\\boxed", re.I)  # every cue contains one of these
_BOXED_BODY = re.compile(r"((?:[^{}]|\{[^{}]*\})*)\}")


class Extraction(NamedTuple):
    """An extracted answer (None: none could be extracted) and the rule that fired."""

    answer: str | None
    rule: str


NONE = Extraction(None, "none")


def explicit_spans(text: str) -> list[tuple[str, str]]:
    """(rule, scope) for every explicit answer statement: the final kind first (\\boxed{}, '####',
    'final answer', 'correct answer'), then the others, each kind in text order. The scope is what
    the statement says: the body of \\boxed{}, else the rest of the line (or the next non-empty line
    when the cue ends its line), cut at the first sentence end."""
    if not _CUE_HINT.search(text):
        return []  # the common case of a reply with no statement: one cheap search
    hits = [(m.start(), m.end(), m.lastgroup, _TIER[m.lastgroup]) for m in _ANY_CUE.finditer(text)]
    out, last_end = [], -1
    for start, end, rule, tier in hits:
        if start < last_end:
            continue  # "final answer is" is one statement, not also "answer is"
        last_end = end
        if rule == "boxed":
            b = _BOXED_BODY.match(text, end)
            scope = b.group(1) if b else ""
        else:
            rest = text[end:]
            line, _, after = rest.partition("\n")
            if not line.strip(" *_:`"):
                line = next((ln for ln in after.splitlines() if ln.strip()), "")
                if _has_cue(line):
                    line = ""  # "The final answer is:\nThe answer is: X": the next statement says it
            scope = re.split(r"[.!?](?:\s|$)", line, maxsplit=1)[0]
        out.append((tier, start, rule, scope))
    return [(rule, scope) for _, _, rule, scope in sorted(out)]


def _number_in_scope(scope: str) -> str | None:
    """The stated number: after the last '=' when the statement shows its sum ("5 + 3 = 8"), else the first."""
    if "=" in scope:
        tail = _numbers(scope.rsplit("=", 1)[1])
        if tail:
            return tail[0]
    nums = _numbers(scope)
    return nums[0] if nums else None


# -- per answer type ----------------------------------------------------------------------------
def extract_number_rule(text: str, *, mode: str = "flexible") -> Extraction:
    t = _clean(text)
    for rule, scope in explicit_spans(t):
        n = _number_in_scope(scope)
        if n is not None:
            return Extraction(_num(n), rule)
    if mode == "strict":
        return NONE
    nums = _numbers(t)
    return Extraction(_num(nums[-1]), "last_number") if nums else NONE


@lru_cache(maxsize=256)
def _label_re(labels: tuple[str, ...]) -> tuple[re.Pattern, dict[str, str]]:
    """The whole-word pattern of a label set (longest first) and lower-case -> canonical label."""
    alt = "|".join(re.escape(lb) for lb in sorted(labels, key=len, reverse=True))
    return re.compile(rf"(?<![\w])({alt})(?![\w])", re.I), {lb.lower(): lb for lb in labels}


_LONE_BEFORE = re.compile(r"(?:^|[.!?;:\n]|\*\*|__)[\s*_\"'`(\[]*$")
_LONE_AFTER = re.compile(r"^[\s*_\"'`)\]]*(?:[.,!?;:\n…]|$|\*\*|__|-{1,2}\s|—)")


def extract_label_rule(text: str, labels: Sequence[str], *, mode: str = "flexible") -> Extraction:
    if not labels:
        return NONE
    t = _clean(text)
    word, canon = _label_re(tuple(labels))
    for rule, scope in explicit_spans(t):
        hit = word.search(scope)
        if hit:
            return Extraction(canon[hit.group(1).lower()], rule)
    if mode == "strict":
        return NONE
    hits = [h for h in word.finditer(t) if not _determiner(h, t)]
    for h in hits:
        if _LONE_BEFORE.search(t[:h.start()]) and _LONE_AFTER.match(t[h.end():]):
            return Extraction(canon[h.group(1).lower()], "lone_label")
    found = {canon[h.group(1).lower()] for h in hits}
    if len(found) == 1:
        return Extraction(found.pop(), "only_label")
    return Extraction(None, "ambiguous") if found else NONE


def _determiner(hit: re.Match, text: str) -> bool:
    """'no' used as a determiner ("no one", "no way", "No more flips") is not the answer no."""
    return hit.group(1).lower() == "no" and re.match(r"[ \t]+[a-z]", text[hit.end():]) is not None


def extract_choice_rule(text: str, labels: Sequence[str] = ("A", "B", "C", "D", "E"), choices: Sequence[str] = (),
                        *, mode: str = "flexible") -> Extraction:
    t = _clean(text)
    alt = "|".join(re.escape(lb) for lb in labels)
    letter = re.compile(rf"^[\s*_:]*(\()?\s*({alt})\s*\)?(?![\w'’])", re.I)
    canon = {lb.upper(): lb for lb in labels}
    for rule, scope in explicit_spans(t):
        m = letter.match(scope)
        if m and not (m.group(2).islower() and not m.group(1) and re.match(r"\s+[a-z]", scope[m.end():])):
            return Extraction(canon[m.group(2).upper()], rule)  # "is a plant" is the article, "is a" / "is (a)" the letter
        m = re.search(rf"\(({alt})\)", scope)
        if m:
            return Extraction(canon[m.group(1).upper()], rule)
        hit = _option_text(scope, labels, choices)
        if hit:
            return Extraction(hit, rule)
    if mode == "strict":
        return NONE
    listed = {x.group(1).upper() for x in re.finditer(rf"^[\s*_#-]*\(?({alt})\s*[).:]\s", t, re.M)}
    if len(listed) > 1:
        return Extraction(None, "option_list")  # the options echoed as a list: no choice was made
    m = re.match(rf"^[\s*_#]*(?:\(\s*({alt})\s*\)|({alt})\s*[).:](?!\d)|({alt})\s*$)", t)
    if m:
        return Extraction(canon[next(g for g in m.groups() if g).upper()], "leading_letter")
    m = re.search(rf"\(({alt})\)", t)
    if m:
        return Extraction(canon[m.group(1).upper()], "paren_letter")
    hit = _option_text(t, labels, choices)
    if hit:
        return Extraction(hit, "choice_text")
    lone = set()
    for m in re.finditer(rf"(?<![\w'’-])({alt})(?![\w'’-])", t):
        if m.group(1) in ("A", "I") and re.match(r"\s+(?!(?:is|was|would|seems|and|or)\b)[a-z]", t[m.end():]):
            continue  # the article "A", not the letter
        lone.add(canon[m.group(1).upper()])
    if len(lone) == 1:
        return Extraction(lone.pop(), "lone_letter")
    return Extraction(None, "ambiguous") if lone else NONE


def _option_text(text: str, labels: Sequence[str], choices: Sequence[str]) -> str | None:
    """The label of the one option whose text appears (whole words, case-insensitive), if exactly one does."""
    found = [lb for lb, c in zip(labels, choices)
             if c.strip() and re.search(rf"(?<![\w]){re.escape(c.strip())}(?![\w])", text, re.I)]
    return found[0] if len(found) == 1 else None


def normalize_text(text: Any) -> str | None:
    if text is None:
        return None
    s = _clean(str(text)).strip().strip("\"'`*“”‘’").strip().rstrip(".!").strip().strip("\"'`*“”‘’")
    return s.lower() or None


_QUOTED = re.compile(r"[\"“']([^\"”']+)[\"”']")


def extract_text_rule(text: str, *, mode: str = "flexible") -> Extraction:
    t = _clean(text)
    for rule, scope in explicit_spans(t):
        quoted = _QUOTED.search(scope)
        ans = normalize_text(quoted.group(1) if quoted else scope)
        if ans and not _has_cue(ans):  # 'The answer is "The answer is "...': an echo, not an answer
            return Extraction(ans, rule)
    if mode == "strict":
        return NONE
    lines = [line for line in t.strip().splitlines() if line.strip() and not _has_cue(line)]
    ans = normalize_text(lines[-1]) if lines else None
    return Extraction(ans, "last_line") if ans else NONE


def _has_cue(text: str) -> bool:
    return _CUE_HINT.search(text) is not None and _ANY_CUE.search(text) is not None


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


def extract_with_rule(answer_type: str, text: str, *, labels: Sequence[str] = (), choices: Sequence[str] = (),
                      pattern: str | None = None, mode: str = "flexible") -> Extraction:
    """Dispatch on the task's answer type. A task's `pattern` (one group; plain `re.search`, as
    lm-eval's regex filter: case-sensitive unless `(?i)`) comes first (rule `pattern`); when it does
    not match, flexible mode applies the type's rules and strict mode gives no answer (lm-eval's
    "strict-match": the one regex or "[invalid]")."""
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode {mode!r}")
    if pattern:
        m = re.search(pattern, text)
        if m:
            inner = m.group(1) if m.groups() else m.group(0)
            if answer_type == "number":  # lm-eval's regexes_to_ignore: "1,8" is 18, never "8"
                inner = inner.replace(",", "")
            got = _by_type(answer_type, inner, labels, choices, "flexible", pattern=True)
            if got.answer is not None:
                return Extraction(got.answer, "pattern")
        if mode == "strict":
            return NONE
    return _by_type(answer_type, text, labels, choices, mode)


def _by_type(answer_type: str, text: str, labels: Sequence[str], choices: Sequence[str], mode: str,
             pattern: bool = False) -> Extraction:
    if answer_type == "number":
        return extract_number_rule(text, mode=mode)
    if answer_type == "choice":
        return extract_choice_rule(text, labels or ("A", "B", "C", "D", "E"), choices, mode=mode)
    if answer_type == "label":
        return extract_label_rule(text, labels, mode=mode)
    if answer_type == "text":
        if pattern:
            ans = normalize_text(text)
            return Extraction(ans, "pattern") if ans else NONE
        return extract_text_rule(text, mode=mode)
    if answer_type == "json":
        obj, ok = extract_json(text)
        return Extraction(json.dumps(obj, sort_keys=True), "json") if ok else NONE
    raise ValueError(f"unknown answer type {answer_type!r}")


def extract(answer_type: str, text: str, *, labels: Sequence[str] = (), pattern: str | None = None,
            choices: Sequence[str] = (), mode: str = "flexible") -> str | None:
    """The answer only (see `extract_with_rule`)."""
    return extract_with_rule(answer_type, text, labels=labels, choices=choices, pattern=pattern, mode=mode).answer


def extract_number(text: str, *, mode: str = "flexible") -> str | None:
    return extract_number_rule(text, mode=mode).answer


def extract_label(text: str, labels: Sequence[str], *, mode: str = "flexible") -> str | None:
    return extract_label_rule(text, labels, mode=mode).answer


def extract_choice(text: str, labels: Sequence[str] = ("A", "B", "C", "D", "E"), choices: Sequence[str] = (),
                   *, mode: str = "flexible") -> str | None:
    return extract_choice_rule(text, labels, choices, mode=mode).answer


def extract_text(text: str, *, mode: str = "flexible") -> str | None:
    return extract_text_rule(text, mode=mode).answer


def normalize_gold(answer_type: str, gold: Any) -> str | None:
    if answer_type == "number":
        return normalize_number(gold)
    if answer_type == "json":
        return json.dumps(gold, sort_keys=True) if not isinstance(gold, str) else json.dumps(json.loads(gold), sort_keys=True)
    if answer_type == "text":
        return normalize_text(gold)
    return None if gold is None else str(gold)
