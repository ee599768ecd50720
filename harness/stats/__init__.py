"""Pure statistics and prices that several stages use: intervals, paired tests, decisions, clustered
errors, prices. Functions over arrays and DataFrames; imports nothing above records/errors/scoring.
Methods and their reasons: docs/statistics.md."""
