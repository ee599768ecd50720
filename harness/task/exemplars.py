"""Which exemplars a few-shot prompt shows, and in what order (strategy keys selection, seed, order,
order_seed; see docs/strategies.md)."""
from __future__ import annotations

import json
import random
from collections import defaultdict

from ..errors import ConfigError
from ..records import Example


def selection(params: dict) -> str:
    """The exemplar selection: `ids` when `exemplars=` names them; as given; else one random set per seed when
    `seed` is given (several draws are what a user who varies `seed` asks for); else the first k of the pool."""
    if "exemplars" in params:
        return "ids"
    return params.get("selection", "random_set" if "seed" in params else "first")


def order_exemplars(shots: list[Example], params: dict) -> list[Example]:
    """`order=shuffled`: the chosen exemplars in an order drawn from `order_seed` (default 0), the same
    permutation of positions for every item (so a fixed set keeps a byte-identical prefix)."""
    if params.get("order", "given") != "shuffled" or len(shots) < 2:
        return shots
    out = list(shots)
    random.Random(f"order:{params.get('order_seed', 0)}").shuffle(out)
    return out


def select_exemplars(task, example: Example, *, k: int, selection: str, seed: int,
                     need_rationale: bool = False, ids: tuple[str, ...] = ()) -> list[Example]:
    """k exemplars from the task's pool, never the item itself (by id or identical input).
    first: the first k; random / balanced: drawn per item from (seed, item id); random_set: one set
    drawn from `seed` for every item (k + 1 are drawn, and the item is skipped if it is among them);
    ids: the pool's items with these ids, in this order (a pinned set: harness optimize's winner)."""
    full = task.pool
    if selection == "ids":
        return _pinned(task, example, k, ids)
    if need_rationale:
        with_r = [e for e in full if e.rationale]
        if not with_r and k:
            raise ConfigError("chain-of-thought exemplars need rationales, and the pool has none",
                              where=str(task.file), field="rationale_field",
                              fix="set rationale_field in the task, or use cot without k")
        full = with_r
    pool = [e for e in full if e.id != example.id and dict(e.fields) != dict(example.fields)]
    if k > len(pool):
        raise ConfigError(f"k={k} is larger than the exemplar pool ({len(pool)} items)", where=str(task.file),
                          field="k", fix=f"use k <= {len(pool)}")
    if selection == "first":
        return pool[:k]
    if selection == "random_set":
        drawn = random.Random(f"set:{seed}").sample(full, min(len(full), k + 1))
        return [e for e in drawn if e.id != example.id and dict(e.fields) != dict(example.fields)][:k]
    rng = random.Random(f"{seed}:{example.id}")
    if selection == "random":
        return rng.sample(pool, k)
    # balanced: round-robin over gold answers so each label is represented
    by_gold: dict[str, list[Example]] = defaultdict(list)
    for e in pool:
        by_gold[json.dumps(e.gold, sort_keys=True, default=str)].append(e)
    groups = [rng.sample(v, len(v)) for _, v in sorted(by_gold.items())]
    out: list[Example] = []
    while len(out) < k:
        for g in groups:
            if g and len(out) < k:
                out.append(g.pop())
    rng.shuffle(out)
    return out


def _pinned(task, example: Example, k: int, ids: tuple[str, ...]) -> list[Example]:
    by_id = {e.id: e for e in task.pool}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ConfigError(f"exemplar id '{missing[0]}' is not in the task's few-shot pool", where=str(task.file),
                          field="exemplars", fix="name ids of the pool's items (the task's fewshot source, "
                                                  "else its own items)")
    if k != len(ids):
        raise ConfigError(f"k={k} but {len(ids)} exemplar ids are named", where=str(task.file), field="k",
                          fix=f"give k={len(ids)} with these exemplars")
    return [by_id[i] for i in ids if i != example.id and dict(by_id[i].fields) != dict(example.fields)]
