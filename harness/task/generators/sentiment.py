"""Sentiment of templated review sentences: positive or negative.

Plain sentences carry one clear opinion word; with `hard_share` > 0 that share of the sentences is
harder: a negated opinion ("was not bad at all") or a contrast whose second half decides
("I expected it to be awful, but it was wonderful")."""
from __future__ import annotations

import random

THINGS = ["movie", "restaurant", "book", "hotel", "phone", "concert", "museum", "game", "bakery", "train ride",
          "laptop", "play", "album", "camera", "cafe", "tour"]
POSITIVE = ["wonderful", "excellent", "delightful", "fantastic", "charming", "superb", "great", "lovely",
            "brilliant", "enjoyable"]
NEGATIVE = ["terrible", "awful", "boring", "disappointing", "dreadful", "dull", "horrible", "poor", "annoying",
            "unpleasant"]
PLAIN = [
    "The {thing} was {adj}.",
    "What a {adj} {thing}!",
    "I found the {thing} {adj} from start to finish.",
    "Honestly, the {thing} was {adj} and I would say so to anyone.",
    "My friends and I agreed that the {thing} was {adj}.",
]
NEGATED = [
    "The {thing} was not {adj} at all.",
    "I would never call the {thing} {adj}.",
]
CONTRAST = [
    "I expected the {thing} to be {other}, but it was {adj}.",
    "Everyone said the {thing} would be {other}; in fact it was {adj}.",
]


def sentiment(n: int = 100, seed: int = 0, hard_share: float = 0.0) -> list[dict]:
    rng = random.Random(f"sentiment:{seed}:{hard_share}")
    rows = []
    for i in range(n):
        label = rng.choice(["positive", "negative"])
        thing = rng.choice(THINGS)
        pos, neg = rng.choice(POSITIVE), rng.choice(NEGATIVE)
        kind = rng.choice(["negated", "contrast"]) if rng.random() < hard_share else "plain"
        if kind == "plain":
            adj = pos if label == "positive" else neg
            text = rng.choice(PLAIN).format(thing=thing, adj=adj)
            why = f'"{adj}" is a {label} word.'
        elif kind == "negated":  # "not <opposite>" carries the label
            adj = neg if label == "positive" else pos
            text = rng.choice(NEGATED).format(thing=thing, adj=adj)
            why = f'The review denies that it was "{adj}", so the opinion is {label}.'
        else:
            adj, other = (pos, neg) if label == "positive" else (neg, pos)
            text = rng.choice(CONTRAST).format(thing=thing, adj=adj, other=other)
            why = f'What it really was is "{adj}", so the opinion is {label}.'
        text = text[0].upper() + text[1:]
        rows.append({"id": f"sentiment-{seed}-{i:05d}", "text": text, "answer": label, "kind": kind,
                     "rationale": why})
    return rows
