"""Print a run's summary table to the terminal."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = [("task", "task"), ("strategy", "strategy"), ("n", "n"), ("accuracy", "acc"), ("ci_low", "lo"),
           ("ci_high", "hi"), ("accuracy_norm", "acc_norm"), ("schema_valid_rate", "schema_ok"),
           ("parse_fail_rate", "parse_fail"), ("errors", "err"), ("mean_prompt_tokens", "prompt_tok"),
           ("mean_completion_tokens", "compl_tok"), ("mean_latency_s", "latency_s"),
           ("total_cost_usd", "cost_usd")]


def format_summary(summary: pd.DataFrame) -> str:
    cols = [(c, h) for c, h in COLUMNS if c in summary.columns and summary[c].notna().any()]
    table = summary[[c for c, _ in cols]].rename(columns=dict(cols))
    return table.to_string(index=False, float_format=lambda x: f"{x:.3f}", na_rep="-")


def print_summary(run_dir: Path) -> None:
    path = Path(run_dir) / "summary.csv"
    if path.exists():
        summary = pd.read_csv(path)
        if not summary.empty:
            model = summary["model"].iloc[0]
            print(f"model: {model}")
            print(format_summary(summary))
    variance = Path(run_dir) / "variance.csv"
    if variance.exists():
        from .variance import format_variance

        print(format_variance(pd.read_csv(variance)))
