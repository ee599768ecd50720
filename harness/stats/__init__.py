"""Pure statistics over arrays and DataFrames (no harness stage imports): the paired score interval
and test, the Holm-matched levels, the decisions against the best cell, and cluster-robust errors.
Methods and their reasons: docs/statistics.md."""
