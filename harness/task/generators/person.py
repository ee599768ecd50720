"""person_json: a short description of a person (or a teddy bear) -> {first_name, last_name, age, hobby}."""
from __future__ import annotations

import random

from .symbolic import FIRST, LAST

HOBBIES = ["chess", "painting", "hiking", "cooking", "swimming", "gardening", "knitting", "cycling", "reading",
           "photography", "dancing", "fishing", "singing", "running", "pottery"]
BEARS = ["Teddy", "Bruno", "Honey", "Barnaby", "Coco"]

SCHEMA = {
    "type": "object",
    "properties": {
        "first_name": {"type": "string", "maxLength": 20},
        "last_name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "hobby": {"type": "string", "maxLength": 20},
    },
    "required": ["first_name", "last_name", "age", "hobby"],
    "additionalProperties": False,
}

TEMPLATES = [
    "{first} {last} is {age} years old and loves {hobby}.",
    "Meet {first} {last}. At {age}, {pronoun} spends every weekend on {hobby}.",
    "My neighbour, {first} {last}, turned {age} this year; {pronoun} is really into {hobby}.",
    "{last}, {first}: age {age}, favourite pastime {hobby}.",
]
BEAR_TEMPLATES = [
    "{first} {last} is a teddy bear who is {age} years old and enjoys {hobby}.",
    "The teddy bear {first} {last} has been around for {age} years and likes {hobby} best.",
]


def person_json(n: int = 100, seed: int = 0, bear_share: float = 0.2) -> list[dict]:
    rng = random.Random(f"person_json:{seed}")
    rows = []
    for i in range(n):
        bear = rng.random() < bear_share
        first = rng.choice(BEARS if bear else FIRST)
        last = rng.choice(LAST)
        age = rng.randint(1, 30) if bear else rng.randint(18, 90)
        hobby = rng.choice(HOBBIES)
        tmpl = rng.choice(BEAR_TEMPLATES if bear else TEMPLATES)
        text = tmpl.format(first=first, last=last, age=age, hobby=hobby, pronoun=rng.choice(["she", "he"]))
        gold = {"first_name": first, "last_name": last, "age": age, "hobby": hobby}
        rows.append({"id": f"person-{seed}-{i:05d}", "text": text, "answer": gold})
    return rows
