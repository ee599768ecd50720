"""Strategies: how a task item becomes requests (zero-shot, few-shot, CoT, self-consistency), grids of them, and the vote."""
