"""Strategy grids: a spec whose values are lists expands into one strategy per combination.

    few_shot:k={0,1,3,5},seed={0,1,2}   -> 12 specs: few_shot:k=0,seed=0  few_shot:k=0,seed=1  ...
    few_shot:k=3,seed={0..7}            -> 8 specs (an integer range, both ends included)
    cot:temperature={0,0.7}             -> cot:temperature=0  cot:temperature=0.7

The expansion is plain text, done before the strategy parser (which then validates every expanded
spec), so each grid point is an ordinary strategy with a readable name. Combinations are listed with
the first key varying slowest, in the order the keys are written. `plan()` counts the units and
requests of a run for `harness run --dry-run` without starting any engine.
"""
from __future__ import annotations

from itertools import product
from typing import Sequence

from ..errors import ConfigError

MAX_GRID = 1000  # strategies from one spec; a typo in a list should not start a week-long run


def split_items(rest: str, spec: str) -> list[str]:
    """Split 'k={1,2},seed=0' on the commas that are outside braces."""
    items, depth, cur = [], 0, []
    for ch in rest:
        if ch == "{":
            depth += 1
            if depth > 1:
                raise ConfigError("nested '{' in a value list", where=spec, field="--strategy",
                                  fix="write one flat list per key, e.g. k={1,3}")
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise ConfigError("'}' without '{'", where=spec, field="--strategy",
                                  fix="write a value list as key={a,b,c}")
        if ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ConfigError("'{' is never closed", where=spec, field="--strategy",
                          fix="close the value list, e.g. k={1,3}")
    items.append("".join(cur))
    return [x.strip() for x in items if x.strip()]


def expand_grid(spec: str) -> list[str]:
    """'few_shot:k={1,3},seed={0,1}' -> ['few_shot:k=1,seed=0', 'few_shot:k=1,seed=1', 'few_shot:k=3,seed=0', ...].
    A spec without braces is returned as it is (stripped)."""
    text = spec.strip()
    if "{" not in text and "}" not in text:
        return [text]
    name, colon, rest = text.partition(":")
    if not colon or "{" in name or "}" in name:
        raise ConfigError("a value list must follow a key", where=spec, field="--strategy",
                          fix="write name:key={a,b}, e.g. few_shot:k={1,3}")
    axes: list[tuple[str, list[str]]] = []
    for item in split_items(rest, spec):
        key, eq, value = item.partition("=")
        key = key.strip()
        if "{" in key or "}" in key:
            raise ConfigError(f"a value list must follow a key ('{item}')", where=spec, field=key,
                              fix=f"write {key.strip('{}')}={{a,b}}")
        value = value.strip()
        if eq and value.startswith("{") and value.endswith("}"):
            values = _range(value, spec, key) or [v.strip() for v in value[1:-1].split(",")]
            if not any(values) or "" in values:
                raise ConfigError(f"empty value in the list '{value}'", where=spec, field=key,
                                  fix=f"give at least one value, e.g. {key}={{1,3}}")
            dup = sorted({v for v in values if values.count(v) > 1})
            if dup:
                raise ConfigError(f"value '{dup[0]}' is listed twice", where=spec, field=key,
                                  fix="give each value once")
            axes.append((key, values))
        elif "{" in value or "}" in value:
            raise ConfigError(f"a value list must be the whole value ('{item}')", where=spec, field=key,
                              fix=f"write {key}={{a,b}}")
        else:
            axes.append((key, [value] if eq else [None]))
    size = 1
    for _, values in axes:
        size *= len(values)
    if size > MAX_GRID:
        raise ConfigError(f"the grid has {size} strategies (more than {MAX_GRID})", where=spec, field="--strategy",
                          fix="use shorter value lists, or split the grid over several runs")
    keys = [k for k, _ in axes]
    out = []
    for combo in product(*(v for _, v in axes)):
        parts = [k if v is None else f"{k}={v}" for k, v in zip(keys, combo)]
        out.append(f"{name}:{','.join(parts)}" if parts else name)
    return out


def _range(value: str, spec: str, key: str) -> list[str] | None:
    """'{0..7}' -> ['0', ..., '7'] (integers, both ends included); None when the list is not a range."""
    lo, dots, hi = value[1:-1].partition("..")
    if not dots:
        return None
    try:
        a, b = int(lo), int(hi)
    except ValueError:
        raise ConfigError(f"a range must join two integers ('{value}')", where=spec, field=key,
                          fix=f"write {key}={{0..7}}") from None
    if b < a or b - a >= MAX_GRID:
        raise ConfigError(f"the range '{value}' is empty or longer than {MAX_GRID}", where=spec, field=key,
                          fix=f"write {key}={{LOW..HIGH}} with LOW <= HIGH")
    return [str(i) for i in range(a, b + 1)]


def expand_all(specs: Sequence[str]) -> list[str]:
    """Every spec expanded, in order."""
    return [s for spec in specs for s in expand_grid(spec)]


def plan(units) -> list[dict]:
    """One row per task x strategy: units (examples) and requests, from the built (rendered) units."""
    rows: dict[tuple[str, str], dict] = {}
    for u in units:
        key = (u.task.name, u.strategy.spec)
        r = rows.setdefault(key, {"task": key[0], "strategy": key[1], "examples": 0, "requests": 0, "generations": 0})
        r["examples"] += 1
        r["requests"] += len(u.requests)
        r["generations"] += sum(req.sampling.n for req in u.requests)
    return list(rows.values())


def format_plan(rows: list[dict], n_strategies: int) -> str:
    import pandas as pd

    df = pd.DataFrame(rows, columns=["task", "strategy", "examples", "requests", "generations"])
    lines = [f"dry run: {n_strategies} strategies x {df['task'].nunique()} tasks = {len(df)} groups; "
             f"{int(df['requests'].sum())} requests ({int(df['generations'].sum())} generations); nothing was started",
             df.to_string(index=False)]
    return "\n".join(lines)
