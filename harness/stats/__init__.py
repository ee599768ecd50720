"""Pure statistics and prices that several stages use: intervals, paired tests, decisions, prices.
Functions over arrays and DataFrames; imports nothing above records/errors/scoring."""
