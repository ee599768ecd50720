"""Short-answer fact tasks from built-in lists: country -> capital, and days of the week.

The facts are public-domain general knowledge, written out here so that no data is downloaded.
"""
from __future__ import annotations

import random

# (country, capital): capitals as commonly spelled in English, without diacritics. Countries whose
# capital is disputed or split (Bolivia, Israel, the Netherlands, South Africa ...) are left out.
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Greece", "Athens"),
    ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Ireland", "Dublin"), ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Hungary", "Budapest"),
    ("Peru", "Lima"), ("Argentina", "Buenos Aires"), ("Chile", "Santiago"), ("Mexico", "Mexico City"),
    ("Kenya", "Nairobi"), ("Thailand", "Bangkok"), ("South Korea", "Seoul"), ("Iran", "Tehran"),
    ("Iraq", "Baghdad"), ("Cuba", "Havana"), ("Belgium", "Brussels"), ("Czech Republic", "Prague"),
    ("Australia", "Canberra"), ("Canada", "Ottawa"), ("Turkey", "Ankara"), ("Brazil", "Brasilia"),
    ("Switzerland", "Bern"), ("Nigeria", "Abuja"), ("Pakistan", "Islamabad"), ("Morocco", "Rabat"),
    ("Vietnam", "Hanoi"), ("New Zealand", "Wellington"), ("India", "New Delhi"), ("Colombia", "Bogota"),
    ("Ecuador", "Quito"), ("Venezuela", "Caracas"), ("Ukraine", "Kyiv"), ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Philippines", "Manila"),
    ("Indonesia", "Jakarta"), ("Malaysia", "Kuala Lumpur"), ("Saudi Arabia", "Riyadh"), ("Syria", "Damascus"),
    ("Ethiopia", "Addis Ababa"), ("Ghana", "Accra"), ("Senegal", "Dakar"), ("Tunisia", "Tunis"),
    ("Afghanistan", "Kabul"), ("Nepal", "Kathmandu"), ("Mongolia", "Ulaanbaatar"), ("Iceland", "Reykjavik"),
    ("Latvia", "Riga"), ("Lithuania", "Vilnius"), ("Estonia", "Tallinn"), ("Uruguay", "Montevideo"),
]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_COUNT = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def country_capital(n: int = 100, seed: int = 0) -> list[dict]:
    """'What is the capital of Kenya?' -> 'Nairobi'. Every capital of the list is a label."""
    rng = random.Random(f"country_capital:{seed}")
    labels = [c for _, c in CAPITALS]
    order = list(CAPITALS)
    rows: list[dict] = []
    while len(rows) < n:  # each country once per pass, in a seeded order
        rng.shuffle(order)
        for country, capital in order[: n - len(rows)]:
            rows.append({"id": f"capital-{seed}-{len(rows):05d}", "country": country, "answer": capital,
                         "capitals": labels,
                         "rationale": f"{country}'s seat of government is in {capital}."})
    return rows


def next_day(n: int = 100, seed: int = 0, max_offset: int = 1, before_share: float = 0.0) -> list[dict]:
    """'What day of the week is two days after Friday?' -> 'Sunday'. With max_offset=1 every
    question asks for the next day; `before_share` of the questions count backwards."""
    rng = random.Random(f"next_day:{seed}:{max_offset}:{before_share}")
    rows = []
    for i in range(n):
        start = rng.randrange(7)
        k = rng.randint(1, max_offset)
        back = rng.random() < before_share
        sign = -1 if back else 1
        answer = DAYS[(start + sign * k) % 7]
        when = f"{_COUNT[k]} day{'s' if k > 1 else ''} {'before' if back else 'after'} {DAYS[start]}"
        if k == 1:
            question = f"What day of the week comes {'before' if back else 'after'} {DAYS[start]}?"
        else:
            question = f"What day of the week is {when}?"
        steps = [DAYS[(start + sign * j) % 7] for j in range(1, k + 1)]
        rationale = (f"Counting {'back' if back else 'on'} from {DAYS[start]}: " + ", ".join(steps) + ".")
        rows.append({"id": f"day-{seed}-{i:05d}", "question": question, "answer": answer, "days": DAYS,
                     "rationale": rationale})
    return rows
