"""The run folder's derived tables: summary.csv, majk.csv and variance.csv, written from the predictions,
samples and probes that the runner wrote (the runner writes rows; the report stage aggregates them)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..runs.results import write_frame_atomic
from .stats import majk_table, summarize
from .variance import variance_table


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def write_tables(run_dir: str | Path, preds: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write summary.csv (and majk.csv / variance.csv where they have rows) into `run_dir`; return the
    summary. `preds`: the run's predictions when the caller has them in memory (else read back)."""
    d = Path(run_dir)
    if preds is None:
        preds = _read(d / "predictions.parquet")
    samples, probes = _read(d / "samples.parquet"), _read(d / "probes.parquet")
    summary = summarize(preds, probes if not probes.empty else None)
    write_frame_atomic(summary, d / "summary.csv")
    if not samples.empty:
        write_frame_atomic(majk_table(preds, samples), d / "majk.csv")
    variance = variance_table(preds)
    if not variance.empty:  # only runs with several exemplar draws / orders / sampling seeds
        write_frame_atomic(variance, d / "variance.csv")
    return summary
