"""Self-consistency's vote: majority over the extracted answers, ties broken by mean per-token
log-probability, else by sample order; the rule that decided is returned with the winner."""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

from ..records import Sample


def _winner_rule(samples: Sequence[Sample], rules: Sequence[str], answer: str | None) -> str:
    """The extraction rule of the first sample that gave the winning answer ('none' when no sample had one)."""
    return next((r for s, r in zip(samples, rules) if s.answer == answer and answer is not None), "none")


def vote(samples: Sequence[Sample]) -> tuple[str | None, dict[str, int], str]:
    """Majority vote over extracted answers. Returns (winner, votes, tie_rule)."""
    counts = Counter(s.answer for s in samples if s.answer is not None)
    if not counts:
        return None, {}, "none"
    top = max(counts.values())
    tied = [a for a in counts if counts[a] == top]
    if len(tied) == 1:
        return tied[0], dict(counts), "majority"
    scores: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        if s.answer in tied and s.cumulative_logprob is not None and s.completion_tokens:
            scores[s.answer].append(s.cumulative_logprob / s.completion_tokens)
    if all(scores.get(a) for a in tied):
        best = max(tied, key=lambda a: sum(scores[a]) / len(scores[a]))
        return best, dict(counts), "logprob"
    first = next(s.answer for s in samples if s.answer in tied)
    return first, dict(counts), "first"
