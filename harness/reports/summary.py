"""Print a run's summary table to the terminal."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..scoring.scorers import all_aggregates

COLUMNS = [("task", "task"), ("strategy", "strategy"), ("n", "n"), ("accuracy", "acc"), ("ci_low", "lo"),
           ("ci_high", "hi"), *((a.column, a.short) for a in all_aggregates()),
           ("parse_fail_rate", "parse_fail"), ("errors", "err"), ("mean_prompt_tokens", "prompt_tok"),
           ("mean_completion_tokens", "compl_tok"), ("cached_rows", "cached"),
           ("probe_latency_p50_s", "probe_p50_s"), ("probe_ttft_p50_s", "probe_ttft_s"),
           ("est_latency_p50_s", "est_p50_s"), ("est_ttft_p50_s", "est_ttft_s"),
           ("engine_s_per_example", "engine_s/ex"), ("cost_per_example_usd", "usd/ex")]


def format_summary(summary: pd.DataFrame, *, with_model: bool = False) -> str:
    cols = [(c, h) for c, h in COLUMNS if c in summary.columns and summary[c].notna().any()]
    if with_model:  # several models in one run: a model column after the strategy
        cols.insert(2, ("model", "model"))
    table = summary[[c for c, _ in cols]].rename(columns=dict(cols))
    return table.to_string(index=False, float_format=lambda x: f"{x:.3f}", na_rep="-")


def print_summary(run_dir: Path) -> None:
    path = Path(run_dir) / "summary.csv"
    if path.exists():
        summary = pd.read_csv(path)
        if not summary.empty:
            models = list(dict.fromkeys(summary["model"]))
            print(f"model: {' + '.join(map(str, models))}")
            print(format_summary(summary, with_model=len(models) > 1))
            if len(models) > 1:  # the verdict over every (template, strategy, model) cell (harness/reports/matrix.py)
                print_matrix_verdicts(Path(run_dir), summary)
    variance = Path(run_dir) / "variance.csv"
    if variance.exists():
        from .variance import format_variance

        print(format_variance(pd.read_csv(variance)))
    for text in folder_verdicts(Path(run_dir)):  # after the table(s), before the run folder's path (cli.py)
        print(text)


def folder_verdicts(folder: Path) -> list[str]:
    """The verdict sentences of the report.md of a run folder (or of a `harness compare` folder): from its
    summary.csv and its pairs.csv when that is newer (the report was written after the run), else the paired
    tests computed here from its predictions."""
    path = folder / "summary.csv"
    if not path.exists():
        return []
    summary = pd.read_csv(path)
    if summary.empty:
        return []
    from .paired import PAIR_COLUMNS, pairs_table
    from .verdicts import family_verdicts, verdicts

    pairs_csv = folder / "pairs.csv"
    if pairs_csv.exists() and pairs_csv.stat().st_mtime >= path.stat().st_mtime:
        pairs = pd.read_csv(pairs_csv)
    else:
        preds = folder / "predictions.parquet"
        pairs = pairs_table(pd.read_parquet(preds)) if preds.exists() else pd.DataFrame(columns=PAIR_COLUMNS)
    from .race_report import race_decisions, with_race

    return [v["text"] for v in with_race(race_decisions(folder), verdicts(summary, pairs) + family_verdicts(pairs))]


def print_matrix_verdicts(run_dir: Path, summary: pd.DataFrame) -> None:
    from .matrix import cell_pairs
    from .matrix_verdicts import matrix_verdicts

    p = run_dir / "predictions.parquet"
    if p.exists():
        preds = pd.read_parquet(p)
        for v in matrix_verdicts(summary, cell_pairs(preds)):
            print(v["text"])
