"""The optimiser's winner as something a user can run again: a strategy spec with its exemplars pinned
by id (`exemplars=ID|ID|...`, the order they were shown in), and its template as a named variant file.

    pinned_spec(val_task, "few_shot:k=2,seed=3,order=shuffled,template=terse", run_seed=0)
    # -> ('few_shot:k=2,exemplars=fs-00012|fs-00031,sampling_seed=3,template=terse', ['fs-00012', 'fs-00031'])

Pinning is possible when every val item was shown the same exemplars (selection first or random_set, the
default for a seed); the pinned spec then renders the same requests on any item outside those exemplars,
whichever pool the task is later run with, as long as the pool holds these ids. Per-item draws
(selection=random / balanced) cannot be pinned: the spec is returned as it is, with a note.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..strategy.strategies import parse_strategy

UNPINNED = ("selection", "seed", "order", "order_seed", "exemplars")
UNSAFE_ID = set(",|{}=: ")


def pinned_spec(val_task, winner: str, *, run_seed: int) -> tuple[str, list[str] | None, str]:
    """(spec, exemplar ids or None, note). The spec renders the winner's requests with its exemplars fixed."""
    strat = parse_strategy(winner)
    task = val_task.variant(strat.params["template"]) if "template" in strat.params else val_task
    shown = {tuple(e.id for e in strat.exemplars(task, ex, run_seed=run_seed)) for ex in task.examples}
    if shown == {()}:
        return winner, [], "no exemplars"
    if len(shown) != 1:
        return winner, None, ("its exemplars are drawn per item (selection random / balanced): the spec draws "
                              "them again from the pool it is run with")
    ids = list(next(iter(shown)))
    if any(set(i) & UNSAFE_ID for i in ids):
        return winner, None, "an exemplar id holds a character a strategy spec cannot carry: not pinned"
    name, _, rest = winner.partition(":")
    count = "shots" if name == "self_consistency" else "k"  # self-consistency's k is its samples
    params = [p for p in rest.split(",") if p and p.split("=")[0] not in UNPINNED + (count,)]
    keep = [f"{count}={len(ids)}", f"exemplars={'|'.join(ids)}"]
    if "seed" in strat.params and "sampling_seed" not in strat.params:
        keep.append(f"sampling_seed={strat.params['seed']}")  # `seed` also set the sampling seed
    return f"{name}:{','.join(keep + params)}", ids, "exemplars pinned by id"


def template_file(val_task, winner: str, folder: Path, *, name: str = "optimized") -> Path:
    """Copy the winner's template into `folder` as NAME.j2 (a named variant a task file can list)."""
    strat = parse_strategy(winner)
    task = val_task.variant(strat.params["template"]) if "template" in strat.params else val_task
    dest = folder / f"{name}.j2"
    shutil.copyfile(task.template.path, dest)
    return dest


def with_variant(spec: str, variant: str) -> str:
    """The spec with `template=` set to the named variant."""
    name, _, rest = spec.partition(":")
    params = [p for p in rest.split(",") if p and p.split("=")[0] != "template"] + [f"template={variant}"]
    return f"{name}:{','.join(params)}"
