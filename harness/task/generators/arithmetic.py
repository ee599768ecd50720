"""Multi-step arithmetic: small integer expressions with two or three operations."""
from __future__ import annotations

import random


def multistep_arithmetic(n: int = 100, seed: int = 0, steps: int = 2, max_operand: int = 20) -> list[dict]:
    """'What is (7 + 5) * 3?' -> 36, with a step-by-step rationale."""
    rng = random.Random(f"multistep_arithmetic:{seed}:{steps}:{max_operand}")
    rows = []
    for i in range(n):
        value = rng.randint(1, max_operand)
        expr = str(value)
        lines = []
        for _ in range(steps):
            op = rng.choice("+-*")
            b = rng.randint(1, 9 if op == "*" else max_operand)
            new = {"+": value + b, "-": value - b, "*": value * b}[op]
            lines.append(f"{value} {op} {b} = {new}.")
            expr = f"({expr} {op} {b})" if _ != steps - 1 else f"{expr} {op} {b}"
            value = new
        rows.append({"id": f"arith-{seed}-{i:05d}", "expression": expr, "answer": str(value),
                     "rationale": " ".join(lines)})
    return rows
