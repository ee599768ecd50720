"""Train / val / test splits of a task's items by a hash of each item's id (harness optimize, docs/optimize.md).

An item's part depends only on its id and the split seed: u = the first 8 bytes of
sha256("split:{seed}:{id}") read as a fraction of 2**64; u < test -> test, u < test + val -> val, else train.
Adding or removing items never moves another item to another part, so a grown data set cannot leak a
former test item into val. `max_items` keeps the part's items with the smallest u (a seeded random subset).

    >>> part_of("item-7", seed=0, val=0.35, test=0.35)
    'train'

A run restricted to a part (`RunSpec.split`) asks only that part's items; its few-shot pool is the
train part, unless the task has its own few-shot source, which then is the pool.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, model_validator

PARTS = ("train", "val", "test")


def split_u(item_id: str, seed: int) -> float:
    """The item's position in [0, 1) for the split of `seed`."""
    digest = hashlib.sha256(f"split:{seed}:{item_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def part_of(item_id: str, *, seed: int, val: float, test: float) -> str:
    u = split_u(item_id, seed)
    return "test" if u < test else "val" if u < test + val else "train"


class SplitSpec(BaseModel):
    """Which part of a task's items a run asks (`part`), and how the parts are cut. `val` and `test` are
    shares of the task's items; train is the rest. `max_items` caps the asked part (None: all of it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    part: Literal["val", "test"]
    val: float
    test: float
    seed: int = 0
    max_items: int | None = None
    selected: tuple[str, ...] = ()  # part=test: the strategies fixed by the selection on val (the seal)

    @model_validator(mode="after")
    def _shares(self):
        if not (0 < self.val < 1 and 0 < self.test < 1 and self.val + self.test <= 1):
            raise ValueError("val and test are shares of the items: 0 < val, 0 < test, val + test <= 1")
        if self.max_items is not None and self.max_items < 1:
            raise ValueError("max_items must be a positive number of items")
        if self.part == "test" and not self.selected:
            raise ValueError("the test split is read only after selection: name the selected strategies "
                             "(harness optimize does this once the winner is fixed on val)")
        return self

    def with_part(self, part: str, **update) -> "SplitSpec":
        return SplitSpec(**{**self.model_dump(), "part": part, **update})


def split_ids(ids: Sequence[str], *, seed: int, val: float, test: float) -> dict[str, list[str]]:
    """{part: the ids in that part, in their given order}."""
    out: dict[str, list[str]] = {p: [] for p in PARTS}
    for i in ids:
        out[part_of(i, seed=seed, val=val, test=test)].append(i)
    return out


def capped(ids: Sequence[str], max_items: int | None, seed: int) -> list[str]:
    """The `max_items` ids with the smallest split position, in their given order (all when None)."""
    if max_items is None or len(ids) <= max_items:
        return list(ids)
    keep = set(sorted(ids, key=lambda i: split_u(i, seed))[:max_items])
    return [i for i in ids if i in keep]


def split_task(task, split: SplitSpec):
    """The task restricted to the split's part: its items are the part's (capped), its pool the train part
    (or its own few-shot source), its `limit` cleared (the split decides the items)."""
    parts = split_ids([e.id for e in task.examples], seed=split.seed, val=split.val, test=split.test)
    keep = set(capped(parts[split.part], split.max_items, split.seed))
    examples = tuple(e for e in task.examples if e.id in keep)
    if task.spec.fewshot is None:
        train = set(parts["train"])
        pool = tuple(e for e in task.examples if e.id in train)
    else:
        pool = task.pool
    out = replace(task, spec=task.spec.model_copy(update={"limit": None}))
    out.__dict__.update({k: v for k, v in task.__dict__.items() if k == "template"})
    out.__dict__["examples"], out.__dict__["pool"] = examples, pool
    return out
