"""Needle among distractors: find one fact in a haystack of filler sentences, at a target context length.

Used for the context-length sweep (context rot). `context_tokens` is approximate (about 1.3 tokens a word
for this filler); the prompt_tokens column records the exact count the engine saw.
"""
from __future__ import annotations

import random

from .symbolic import FIRST

FILLER = [
    "The weather in the valley was mild for most of the season.",
    "A small boat drifted slowly along the quiet river.",
    "The library opened a new wing for old maps and atlases.",
    "Several birds gathered on the fence near the barn.",
    "The market sold fresh bread, cheese and apples every morning.",
    "An old clock in the hall chimed every hour without fail.",
    "The hikers rested under a tall oak before the final climb.",
    "A gentle wind carried the smell of pine across the hills.",
]
CITIES = ["Lisbon", "Oslo", "Nairobi", "Lima", "Hanoi", "Quito", "Tunis", "Perth", "Riga", "Cusco", "Dakar", "Porto"]


def needle_haystack(n: int = 20, seed: int = 0, context_tokens: int = 256) -> list[dict]:
    rng = random.Random(f"needle:{seed}:{context_tokens}")
    rows = []
    words_target = int(context_tokens / 1.3)
    for i in range(n):
        name, city = rng.choice(FIRST), rng.choice(CITIES)
        needle = f"{name} keeps the secret key in {city}."
        sentences, words = [], 0
        while words < words_target:
            s = rng.choice(FILLER)
            sentences.append(s)
            words += len(s.split())
        sentences.insert(rng.randint(0, len(sentences)), needle)
        rows.append({"id": f"needle-{context_tokens}-{seed}-{i:05d}", "document": " ".join(sentences),
                     "question": f"In which city does {name} keep the secret key?", "answer": city,
                     "context_tokens": context_tokens})
    return rows
