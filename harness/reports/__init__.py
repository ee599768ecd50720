"""Reports: summary tables, paired statistics, verdicts, variance split, plots and the HTML report."""
