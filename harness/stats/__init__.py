"""Pure statistics: functions over arrays and DataFrames (numpy, scipy, statsmodels, pandas only)."""
