"""The symbolic-reasoning tasks of Wei et al. (2022): last-letter concatenation and coin flip."""
from __future__ import annotations

import random

FIRST = ["Elon", "Larry", "Sergey", "Bill", "Steve", "Mark", "Jeff", "Tim", "Satya", "Sundar", "Grace", "Ada",
         "Alan", "Linus", "Guido", "Marie", "Rosa", "Nina", "Omar", "Priya", "Kenji", "Lucia", "Pedro", "Fatima",
         "Olga", "Ivan", "Chen", "Amara", "Diego", "Hana", "Jonas", "Zara", "Mateo", "Leila", "Noah", "Emma"]
LAST = ["Musk", "Page", "Brin", "Gates", "Jobs", "Cook", "Bezos", "Nadella", "Pichai", "Hopper", "Lovelace",
        "Turing", "Torvalds", "Curie", "Parks", "Simone", "Sharif", "Patel", "Tanaka", "Garcia", "Silva", "Khan",
        "Petrov", "Wang", "Okafor", "Lopez", "Sato", "Berg", "Ali", "Rossi", "Kim", "Novak", "Weber", "Dubois"]


def last_letter_concat(n: int = 100, seed: int = 0, words: int = 2) -> list[dict]:
    """'Take the last letters of each word in "Elon Musk" and concatenate them.' -> 'nk'"""
    rng = random.Random(f"last_letter_concat:{seed}:{words}")
    rows = []
    for i in range(n):
        names = [rng.choice(FIRST)] + [rng.choice(LAST) for _ in range(words - 1)]
        phrase = " ".join(names)
        answer = "".join(w[-1] for w in names)
        steps = " ".join(f'The last letter of "{w}" is "{w[-1]}".' for w in names)
        rationale = f'{steps} Concatenating them is "{answer}".'
        rows.append({"id": f"llc-{seed}-{i:05d}", "phrase": phrase, "answer": answer, "rationale": rationale})
    return rows


def coin_flip(n: int = 100, seed: int = 0, people: int = 2) -> list[dict]:
    """'A coin is heads up. Ka flips the coin. Sherrie does not flip the coin. Is the coin still heads up?'"""
    rng = random.Random(f"coin_flip:{seed}:{people}")
    rows = []
    for i in range(n):
        who = rng.sample(FIRST, people)
        flips = [rng.random() < 0.5 for _ in who]
        sentences = [f"{w} flips the coin." if f else f"{w} does not flip the coin." for w, f in zip(who, flips)]
        question = "A coin is heads up. " + " ".join(sentences) + " Is the coin still heads up?"
        k = sum(flips)
        answer = "yes" if k % 2 == 0 else "no"
        rationale = (f"The coin was flipped by {', '.join(w for w, f in zip(who, flips) if f) or 'no one'}. "
                     f"So the coin was flipped {k} time{'s' if k != 1 else ''}, which is an "
                     f"{'even' if k % 2 == 0 else 'odd'} number. The coin started heads up, so after an "
                     f"{'even' if k % 2 == 0 else 'odd'} number of flips, it will be "
                     f"{'heads' if k % 2 == 0 else 'tails'} up.")
        rows.append({"id": f"coin-{seed}-{i:05d}", "question": question, "answer": answer, "rationale": rationale})
    return rows
