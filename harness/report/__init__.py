"""Reports: summary tables, paired statistics, verdicts, variance split, prices, plots and the HTML report."""


def __getattr__(name: str):  # the flat module harness.report's names, as before the regroup
    from .._aliases import forward

    return forward(__name__, "report", name)
