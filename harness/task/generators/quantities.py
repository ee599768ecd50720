"""Number tasks a small model can partly do: which of two numbers is larger, and unit conversions
with round numbers."""
from __future__ import annotations

import random

# (unit, its singular, into, factor): exact conversions only.
CONVERSIONS = [
    ("meters", "meter", "centimeters", 100), ("kilometers", "kilometer", "meters", 1000),
    ("kilograms", "kilogram", "grams", 1000), ("liters", "liter", "milliliters", 1000),
    ("hours", "hour", "minutes", 60), ("minutes", "minute", "seconds", 60), ("days", "day", "hours", 24),
    ("weeks", "week", "days", 7), ("years", "year", "months", 12), ("feet", "foot", "inches", 12),
    ("dozens", "dozen", "eggs", 12), ("centimeters", "centimeter", "millimeters", 10),
]


def larger_number(n: int = 100, seed: int = 0, low: int = 10, high: int = 99, decimals: bool = False) -> list[dict]:
    """'Which number is larger: 47 or 74?' -> '74'. The two numbers are the labels. With
    decimals=True they share the whole part and differ after the point (5.88 vs 5.92, 7.4 vs 7.35)."""
    rng = random.Random(f"larger_number:{seed}:{low}:{high}:{decimals}")
    rows: list[dict] = []
    while len(rows) < n:
        i = len(rows)
        if decimals:
            whole = rng.randint(low, high)
            sa, sb = (f"{whole}.{d}" for d in rng.sample(range(1, 100), 2))
            va, vb = float(sa), float(sb)
            if va == vb:  # 5.1 and 5.10: draw again
                continue
        else:
            va, vb = rng.sample(range(low, high + 1), 2)
            sa, sb = str(va), str(vb)
        answer = sa if va > vb else sb
        other = sb if answer == sa else sa
        rows.append({"id": f"larger-{seed}-{i:05d}", "a": sa, "b": sb, "answer": answer, "pair": [sa, sb],
                     "rationale": f"{answer} is greater than {other}."})
    return rows


def unit_conversion(n: int = 100, seed: int = 0, max_quantity: int = 9) -> list[dict]:
    """'How many minutes are in 3 hours?' -> '180', with the one-step rationale."""
    rng = random.Random(f"unit_conversion:{seed}:{max_quantity}")
    rows = []
    for i in range(n):
        unit, one, into, factor = rng.choice(CONVERSIONS)
        q = rng.randint(2, max_quantity)
        answer = q * factor
        rationale = f"One {one} is {factor} {into}, so {q} {unit} is {q} x {factor} = {answer} {into}."
        rows.append({"id": f"units-{seed}-{i:05d}", "quantity": q, "unit": unit, "into": into,
                     "answer": str(answer), "rationale": rationale})
    return rows
