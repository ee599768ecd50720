"""Scoring: answer extraction, the scorer table and scoring a prediction (pure functions, used by task/,
strategy/ and runs/ alike)."""
