"""The comparison `harness run --watch` prints after each re-run: every cell (task x strategy) next to the
previous iteration, with the paired test on the items both answered.

    lines = compare_iterations(previous_rows, current_rows)

A cell whose rows did not change is shown as unchanged; a changed one gives accuracy old -> new, mean
tokens old -> new, and the paired test (the score test, McNemar without continuity correction, on the
same example ids; harness/reports/paired.py `pair_test`), and per task the best strategy before and after.
A strategy labelled SPEC@CONFIG (the changed units of a watch) is compared as SPEC.
"""
from __future__ import annotations

import pandas as pd

from .paired import _ok_rows, _per_item, base_strategy, pair_test


def cells(rows: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """{(task, strategy without its @CONFIG label): its rows}."""
    if rows.empty:
        return {}
    keys = list(zip(rows["task"], rows["strategy"].map(base_strategy)))
    return {k: g for k, g in rows.groupby(pd.Series(keys, index=rows.index), sort=False)}


def _acc(d: pd.DataFrame) -> float:
    ok = _ok_rows(d)
    return float(ok["correct"].astype(float).mean()) if len(ok) else float("nan")


def _tokens(d: pd.DataFrame) -> float:
    return float(pd.to_numeric(d["completion_tokens"], errors="coerce").mean()) if len(d) else float("nan")


def _best(by_cell: dict, task: str) -> str:
    accs = {s: _acc(d) for (t, s), d in by_cell.items() if t == task}
    if not accs:
        return "none"
    top = max(accs.values())
    names = sorted(s for s, a in accs.items() if a == top)
    return f"{' = '.join(names)} {top:.0%}"


def compare_iterations(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """Lines comparing two iterations' rows (each one row per unit of its spec)."""
    a, b = cells(old), cells(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        task, strat = key
        if key not in a or key not in b:
            lines.append(f"  {task} / {strat}: {'new cell' if key not in a else 'no longer run'}")
            continue
        if sorted(a[key]["unit_id"]) == sorted(b[key]["unit_id"]):
            lines.append(f"  {task} / {strat}: unchanged, accuracy {_acc(b[key]):.0%}")
            continue
        t = pair_test(_per_item(_ok_rows(a[key])), _per_item(_ok_rows(b[key])))
        lines.append(f"  {task} / {strat}: accuracy {_acc(a[key]):.0%} -> {_acc(b[key]):.0%}, "
                     f"tokens {_tokens(a[key]):.1f} -> {_tokens(b[key]):.1f}; paired on {t['n']} items: "
                     f"{t['only_a']} right only before, {t['only_b']} only now, p = {t['p_mcnemar']:.3g} "
                     f"({t['method']} test)")
    for task in sorted({k[0] for k in b}):
        before, after = _best(a, task), _best(b, task)
        lines.append(f"  {task}: best {after}" + ("" if before == after else f" (was {before})"))
    return lines
