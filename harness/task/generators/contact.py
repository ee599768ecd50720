"""contact_json: one sentence naming a person and a city -> {"name", "city"}. Easier than person_json
(two fields, both copied verbatim from the text, no arithmetic or renaming)."""
from __future__ import annotations

import random

from .needle import CITIES
from .symbolic import FIRST

TEMPLATES = [
    "{name} lives in {city}.",
    "Last year {name} moved to {city}.",
    "This is {name}, who comes from {city}.",
    "{name} was born in {city} and still lives there.",
    "Send the parcel to {name} in {city}.",
    "Our new colleague {name} works from {city}.",
]


def contact_json(n: int = 100, seed: int = 0) -> list[dict]:
    rng = random.Random(f"contact_json:{seed}")
    rows = []
    for i in range(n):
        name, city = rng.choice(FIRST), rng.choice(CITIES)
        text = rng.choice(TEMPLATES).format(name=name, city=city)
        rows.append({"id": f"contact-{seed}-{i:05d}", "text": text, "answer": {"name": name, "city": city}})
    return rows
