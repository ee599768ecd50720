"""The library's `run`: the runner's run, plus the report as a convenience (the CLI does the same).

    import harness
    df = harness.run(tasks=["coin_flip"], strategies=["zero_shot", "cot"], limit=20, report=True)

The runner never imports the report (and the report never imports the runner): this module joins them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from . import runner


def run(*args, report: bool = False, write_report: bool | None = None, **kwargs) -> pd.DataFrame:
    """`harness.runs.runner.run(*args, **kwargs)`; with `report=True` it also writes report.html, report.md
    and pairs.csv into the run folder (`write_report=` is the former name of `report=`). A report that
    fails is a warning: the results are already safe on disk."""
    preds = runner.run(*args, **kwargs)
    if write_report if write_report is not None else report:
        write_report_safely(Path(preds.attrs["run_dir"]))
    return preds


def write_report_safely(run_dir: Path, *, margin: float | None = None) -> list[Path]:
    """Write the report of a finished run; on failure print one warning (the run is complete) and return []."""
    from ..errors import ConfigError
    from ..report.report import write_report

    try:
        return write_report(run_dir, margin=margin)
    except ConfigError:  # a bad --margin is the user's to fix, not a report bug
        raise
    except Exception as exc:  # the results are safe on disk; a report bug must not lose the run
        print(f"warning: the report could not be written ({type(exc).__name__}: {exc}); "
              f"the results are complete. Retry with: harness report {run_dir}", file=sys.stderr)
        return []


run.__doc__ = (run.__doc__ or "") + "\n\n" + (runner.run.__doc__ or "")
