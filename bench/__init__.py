"""Benchmarks of the harness on the real vLLM engine: `python -m bench` (see docs/bench.md).

Every row is a ratio measured in one run on one machine: absolute times on a shared machine are noise.
"""
