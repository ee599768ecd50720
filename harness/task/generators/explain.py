"""Open-ended "explain why" questions, each with the reference fact a good explanation must contain,
for model-graded scoring (`scorer: judge`, docs/judge.md). Also a right and a wrong explanation per
question, written here, so a judge can be measured against known labels without any generation.

The facts are public-domain school science, written out so that no data is downloaded.
"""
from __future__ import annotations

import random

# (question, reference fact, a right explanation, a wrong explanation)
WHY = [
    ("Why is the sky blue?", "Rayleigh scattering",
     "Sunlight is scattered by air molecules, and blue light is scattered more (Rayleigh scattering).",
     "The sky reflects the colour of the oceans."),
    ("Why are leaves green?", "chlorophyll",
     "Leaves contain chlorophyll, which absorbs red and blue light and reflects green.",
     "Leaves are green because they are full of water."),
    ("Why does ice float on water?", "less dense",
     "Ice is less dense than liquid water, because its molecules form an open crystal.",
     "Ice floats because it is colder than the water."),
    ("Why do we have seasons on Earth?", "axial tilt",
     "The Earth's axial tilt changes how directly sunlight hits each hemisphere during the year.",
     "The Earth is much closer to the Sun in summer than in winter."),
    ("Why does a metal spoon feel colder than a wooden one at the same temperature?", "conducts heat",
     "Metal conducts heat away from your hand much faster than wood does.",
     "Metal is always at a lower temperature than wood."),
    ("Why do objects fall to the ground?", "gravity",
     "Gravity pulls objects towards the Earth's mass.",
     "Air pushes objects down from above."),
    ("Why does the Moon show phases?", "sunlit half",
     "As the Moon orbits, we see different parts of its sunlit half.",
     "The Earth's shadow covers different parts of the Moon each night."),
    ("Why does salt melt ice on roads?", "lowers the freezing point",
     "Salt dissolves in the water and lowers the freezing point, so the ice melts.",
     "Salt is warm and heats the ice."),
    ("Why do we see lightning before we hear thunder?", "light travels faster",
     "Light travels faster than sound, so the flash arrives first.",
     "Thunder is made after the lightning has finished."),
    ("Why does bread rise?", "carbon dioxide",
     "Yeast ferments sugars and gives off carbon dioxide gas, which makes the dough rise.",
     "The oven's heat stretches the flour."),
    ("Why do boats float?", "displace",
     "A boat displaces a weight of water equal to its own weight, so the water holds it up.",
     "Boats float because they are made of light materials only."),
    ("Why does a compass needle point north?", "magnetic field",
     "The needle is a magnet that lines up with the Earth's magnetic field.",
     "The North Star pulls the needle towards it."),
    ("Why do plants need sunlight?", "photosynthesis",
     "Plants use sunlight for photosynthesis, which makes sugar from water and carbon dioxide.",
     "Sunlight keeps plants warm so they do not freeze."),
    ("Why does a rainbow appear after rain?", "refraction",
     "Sunlight is bent by refraction and split into colours inside raindrops.",
     "Rain washes colours out of the clouds."),
    ("Why does iron rust?", "oxygen",
     "Iron reacts with oxygen and water to form iron oxide.",
     "Iron rusts because it gets old."),
    ("Why do we sweat?", "evaporation",
     "Sweat cools the body as it evaporates from the skin; evaporation takes heat away.",
     "Sweating removes fat from the body."),
    ("Why does a balloon rub on hair make it stick?", "static electricity",
     "Rubbing moves electrons and builds static electricity; opposite charges attract.",
     "The balloon becomes sticky from the hair's oil."),
    ("Why is the ocean salty?", "dissolved minerals",
     "Rivers carry dissolved minerals from rocks into the sea, where they stay as water evaporates.",
     "Fish release salt into the water."),
    ("Why do stars twinkle?", "atmosphere",
     "Moving layers of the atmosphere bend starlight back and forth.",
     "Stars switch on and off as they burn."),
    ("Why do we have day and night?", "rotates",
     "The Earth rotates on its axis, so each place faces the Sun and then turns away.",
     "The Sun goes around the Earth once a day and hides at night."),
    ("Why does a spinning top stay upright?", "angular momentum",
     "Its angular momentum resists changes to the direction of its spin axis.",
     "The floor pushes it upright while it moves."),
    ("Why do onions make people cry?", "sulfur",
     "Cutting onions releases a sulfur compound that irritates the eyes.",
     "Onions are spicy, and spice makes eyes water."),
    ("Why does hot air rise?", "less dense",
     "Heated air expands and becomes less dense than the cooler air around it.",
     "Hot air is attracted by the Sun."),
    ("Why do cats purr?", "vibrat",
     "Muscles in the cat's larynx vibrate quickly as it breathes, making the purr.",
     "Cats purr because they have a small motor in their chest."),
]


def explain_why(n: int = 24, seed: int = 0) -> list[dict]:
    """Each question once per pass, in a seeded order. Columns: question, answer (the reference fact),
    good (a right explanation), bad (a wrong one)."""
    rng = random.Random(f"explain_why:{seed}")
    order = list(WHY)
    rows: list[dict] = []
    while len(rows) < n:
        rng.shuffle(order)
        for q, fact, good, bad in order[: n - len(rows)]:
            rows.append({"id": f"why-{seed}-{len(rows):05d}", "question": q, "answer": fact, "good": good,
                         "bad": bad})
    return rows


def explain_why_labels(seed: int = 0, prefixes: int = 1, n: int | None = None) -> list[dict]:
    """A labelled calibration set for a judge of `explain_why`: every question with its right explanation
    (label true) and its wrong one (label false); `prefixes` > 1 adds rephrased copies ("I think ...");
    `n` keeps the first n rows (every generator takes n and seed)."""
    pre = ["", "I think ", "Well, ", "As far as I know, "][:max(1, prefixes)]
    rows = []
    for k, (q, fact, good, bad) in enumerate(WHY):
        for p in pre:
            for label, text in ((True, good), (False, bad)):
                out = p + text[0].lower() + text[1:] if p else text
                rows.append({"id": f"why-label-{seed}-{len(rows):05d}", "question": q, "answer": fact, "output": out,
                             "label": label})
    return rows if n is None else rows[:n]
