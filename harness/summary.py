"""Print a run's summary table to the terminal."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .scorers import all_aggregates

COLUMNS = [("task", "task"), ("strategy", "strategy"), ("n", "n"), ("accuracy", "acc"), ("ci_low", "lo"),
           ("ci_high", "hi"), *((a.column, a.short) for a in all_aggregates()),
           ("parse_fail_rate", "parse_fail"), ("errors", "err"), ("mean_prompt_tokens", "prompt_tok"),
           ("mean_completion_tokens", "compl_tok"), ("cached_rows", "cached"),
           ("probe_latency_p50_s", "probe_p50_s"), ("probe_ttft_p50_s", "probe_ttft_s"),
           ("est_latency_p50_s", "est_p50_s"), ("est_ttft_p50_s", "est_ttft_s"),
           ("engine_s_per_example", "engine_s/ex"), ("cost_per_example_usd", "usd/ex")]


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
