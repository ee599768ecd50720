"""Compare two run folders row by row on every non-timing column (issue 21's check that a refactor
changed no result): rows keyed by (task, strategy, model, example_id), values compared as strings.

    python scripts/compare_runs.py results/before results/after
Prints the columns compared, the rows, and every difference; exits 1 when any non-timing value differs."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

KEY = ["task", "strategy", "model", "example_id"]
TIMING = ("latency", "ttft", "itl", "tpot", "engine_s", "wall", "est_", "probe_", "cost_usd", "run_id",
          "tokens_per_s", "time")


def non_timing(columns) -> list[str]:
    return [c for c in columns if c not in KEY and not any(t in c for t in TIMING)]


def compare(a: Path, b: Path) -> list[str]:
    x = pd.read_parquet(a / "predictions.parquet").set_index(KEY).sort_index()
    y = pd.read_parquet(b / "predictions.parquet").set_index(KEY).sort_index()
    diffs = []
    if list(x.index) != list(y.index):
        diffs.append(f"rows differ: {len(x)} vs {len(y)}; only in A: {sorted(set(x.index) - set(y.index))[:5]}, "
                     f"only in B: {sorted(set(y.index) - set(x.index))[:5]}")
        return diffs
    cols = [c for c in non_timing(x.columns) if c in y.columns]
    missing = sorted(set(non_timing(x.columns)) ^ set(non_timing(y.columns)))
    if missing:
        diffs.append(f"columns in only one run: {missing}")
    for c in cols:
        xs, ys = x[c].map(str), y[c].map(str)  # map, not astype: a pandas string column keeps <NA> under astype
        for k, a_, b_ in zip(xs.index, xs.tolist(), ys.tolist()):
            if a_ != b_:
                diffs.append(f"{k} {c}: {a_[:80]!r} vs {b_[:80]!r}")
    print(f"{len(x)} rows, {len(cols)} non-timing columns compared: {', '.join(cols)}")
    return diffs


if __name__ == "__main__":
    d = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print("\n".join(d) if d else "identical")
    sys.exit(1 if d else 0)
