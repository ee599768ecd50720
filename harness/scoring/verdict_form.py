"""A verdict schema -> one regular expression with fixed separators, and the most tokens a match can take.

Why not the JSON schema itself: vLLM's JSON constraint (xgrammar, this version) lets any amount of
whitespace stand between the fields, and its whitespace switch is engine-wide, not per request. On the
bundled model 4 of 1,000 guided verdicts looped on whitespace or text until max_tokens and did not parse
(scripts/judge_measure.py, docs/judge.md). The regex form fixes the separators (`{"a": 1, "b": true}`, as
`json.dumps` writes) and writes every string in printable ASCII without `"` or `\\`: one byte per
character, and a token is at least one byte, so a verdict needs at most `longest` tokens. A judge whose
max_tokens is at least that always finishes its verdict, so every guided verdict parses by construction.

Compiled: an object whose properties are all required, with no additional ones, each

    a string with maxLength (and optional minLength) | an integer with minimum and maximum (at most
    1,000 values) | a boolean | an enum of JSON scalars.

Anything else gives None, and the judge is constrained by the JSON schema as before.

>>> rx, longest = verdict_form({"type": "object", "additionalProperties": False, "required": ["s", "ok"],
...                             "properties": {"s": {"type": "integer", "minimum": 1, "maximum": 3},
...                                            "ok": {"type": "boolean"}}})
>>> rx, longest
('\\\\{"s": (1|2|3), "ok": (true|false)\\\\}', 21)
"""
from __future__ import annotations

import json
from typing import Any, Mapping

TEXT = r'[ !#-\[\]-~]'  # printable ASCII but '"' (0x22) and '\' (0x5c): never escaped, one byte each
MAX_INT_VALUES = 1000
META = set("\\.^$|?*+()[]{}")


def _escape(text: str) -> str:
    """Regex metacharacters escaped, nothing else (re.escape also escapes spaces, which xgrammar warns on)."""
    return "".join("\\" + c if c in META else c for c in text)


def verdict_form(schema: Mapping[str, Any]) -> tuple[str, int] | None:
    """(regex, the most tokens a match takes), or None when the schema is outside the compiled subset."""
    props = schema.get("properties")
    if (schema.get("type") != "object" or not isinstance(props, Mapping) or not props
            or set(schema.get("required") or ()) != set(props) or schema.get("additionalProperties", True) is not False):
        return None
    parts, longest = [], 2  # the braces
    for i, (name, prop) in enumerate(props.items()):
        value = _value(prop)
        if value is None or not str(name).isascii():
            return None
        head = (", " if i else "") + json.dumps(name) + ": "
        parts.append(_escape(head) + value[0])
        longest += len(head) + value[1]
    return r"\{" + "".join(parts) + r"\}", longest


def _value(prop: Any) -> tuple[str, int] | None:
    """(regex, most bytes) of one property's value."""
    if not isinstance(prop, Mapping):
        return None
    if "enum" in prop:
        texts = [json.dumps(v) for v in prop["enum"]]
        if not texts or any(not t.isascii() or isinstance(v, (list, dict)) for t, v in zip(texts, prop["enum"])):
            return None
        return "(" + "|".join(_escape(t) for t in texts) + ")", max(len(t) for t in texts)
    kind = prop.get("type")
    if kind == "boolean":
        return "(true|false)", 5
    if kind == "integer":
        low, high = prop.get("minimum"), prop.get("maximum")
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= high - low < MAX_INT_VALUES):
            return None
        values = [str(v) for v in range(low, high + 1)]
        return "(" + "|".join(_escape(v) for v in values) + ")", max(len(v) for v in values)
    if kind == "string" and isinstance(prop.get("maxLength"), int):
        low, high = int(prop.get("minLength") or 0), prop["maxLength"]
        if set(prop) - {"type", "maxLength", "minLength", "description", "title"} or not 0 <= low <= high:
            return None  # a pattern or format this does not read
        return '"' + TEXT + "{" + f"{low},{high}" + '}"', high + 2
    return None
