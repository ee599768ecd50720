"""A scripted larger_number answerer whose accuracy is set by how many exemplars the prompt shows, fixed per
item (a hash of the exemplar count and the two numbers): for tests of the race and the optimiser."""
from __future__ import annotations

import hashlib
import re

SKILL = {0: 0.3, 1: 0.5, 2: 0.9, 3: 0.92}  # accuracy by the number of exemplars shown (more: 0.9)


def skilled_answer(request) -> str:
    text = "\n".join(m.content for m in request.messages) + (request.prompt or "")
    a, b = map(int, re.findall(r"Which number is larger: (\d+) or (\d+)\?", text)[-1])
    k = text.count("A: The answer is")
    h = int(hashlib.sha256(f"{k}-{a}-{b}".encode()).hexdigest(), 16) % 1000 / 1000
    return f"The answer is {max(a, b) if h < SKILL.get(k, 0.9) else min(a, b)}."
