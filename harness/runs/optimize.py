"""`harness optimize`: search strategies x template variants on a val split, read the test split once.

One optimise folder holds
    optimize.json   the settings, the split sizes, the candidates searched, the selection, the result
    val/            an ordinary run folder: every searched candidate on the val items (journaled, cached)
    test/           an ordinary run folder: the winner and the baseline on the test items

The items are split by a hash of each item's id (harness/task/splits.py). Each run restricts itself to its
part through `RunSpec.split`, so it is resumable and cached like every run. The steps, which
harness.api.optimize joins with the runner and the report stage:

    spec = OptimizeSpec.build(task="coin_flip", search=("few_shot:k={1,3},seed={0,1}",), templates=("terse",))
    plan = plan_search(spec)                 # candidates rendered, the budget applied (nothing runs)
    folder = open_folder(spec, plan)         # optimize.json; a folder of other settings is refused
    ... run plan.val_spec ...
    selection = select_winner(folder, plan, val_predictions)   # fixes the winner, written to optimize.json
    ... run open_test_split(folder) ...            # refused (SplitSealed) before select_winner has run

Selection reads the full val split of every candidate (the race, harness/runs/race.py, is not used: the
inflation figures of docs/optimize.md are for a full-split selection).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..errors import ConfigError, HarnessError, suggest
from ..strategy.grid import expand_grid
from ..strategy.strategies import parse_strategy
from ..task.splits import SplitSpec, split_ids, split_task
from .results import new_run_id, RESULTS_DIR, write_json_atomic
from .spec import RunSpec, check_margin
from .units import build_units

# preset -> the most candidates searched and the most val items read (docs/optimize.md has the table)
PRESETS = {"light": {"candidates": 8, "val_items": 100}, "medium": {"candidates": 16, "val_items": 200},
           "heavy": {"candidates": 32, "val_items": 400}}
DEFAULT_PRESET = "medium"
STATE_FILE = "optimize.json"
FLAGS = {"task": "--task", "search": "--search", "templates": "--template", "baseline": "--baseline",
         "preset": "--preset", "budget": "--budget", "val": "--val", "test": "--test", "val_items": "--val-items",
         "split_seed": "--split-seed", "seed": "--seed", "margin": "--margin", "run": "run options"}


class SplitSealed(HarnessError):
    """The test split was asked for before the winner was fixed on val."""


class OptimizeSpec(BaseModel):
    """What an optimisation is; every field is the `harness optimize` flag of the same name. `run` holds the
    RunSpec fields of its runs (models, backend, data_dir, cache, prices, ...). val / test: shares of the
    task's items (None: 0.35 / 0.35, the rest is the exemplar pool; 0.5 / 0.5 for a task with its own
    few-shot source)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    search: tuple[str, ...]
    templates: tuple[str, ...] = ()
    baseline: str = "zero_shot"
    preset: str = DEFAULT_PRESET
    budget: int | None = None  # requests on val
    val: float | None = None
    test: float | None = None
    val_items: int | None = None  # None: the preset's
    split_seed: int = 0
    seed: int = 0
    margin: float = 0.05
    run: dict[str, Any] = {}

    @field_validator("search")
    @classmethod
    def _search(cls, v):
        if not v:
            raise ValueError("give at least one strategy or grid to search, e.g. few_shot:k={1,3},seed={0..3}")
        return v

    @field_validator("preset")
    @classmethod
    def _preset(cls, v):
        if v not in PRESETS:
            raise ValueError(f"unknown preset '{v}'; {suggest(v, PRESETS)}")
        return v

    @field_validator("budget", "val_items")
    @classmethod
    def _positive(cls, v):
        if v is not None and v < 1:
            raise ValueError("must be a positive integer")
        return v

    @field_validator("margin")
    @classmethod
    def _margin(cls, v):
        return check_margin(v)

    @classmethod
    def build(cls, **fields: Any) -> "OptimizeSpec":
        """Validate; a bad field is one line naming its flag and the fix (exit 2)."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else "spec"
            flag = FLAGS.get(field, field)
            fix = suggest(field, cls.model_fields) if err["type"] == "extra_forbid" else "see `harness optimize --help`"
            raise ConfigError(err["msg"].removeprefix("Value error, "), where="optimize", field=flag, fix=fix) from None

    def record(self) -> dict:
        return json.loads(self.model_dump_json())


@dataclass(frozen=True)
class Plan:
    spec: OptimizeSpec
    task_name: str
    split: SplitSpec  # part="val"
    sizes: dict[str, int]  # items per part (val: those read)
    candidates: tuple[str, ...]  # every candidate of the search space
    chosen: tuple[str, ...]  # those the budget lets run, in search order
    costs: dict[str, int]  # requests of each chosen candidate on val
    val_spec: RunSpec


def with_template(spec: str, template: str) -> str:
    name, colon, rest = spec.partition(":")
    return f"{spec},template={template}" if colon and rest.strip() else f"{name}:template={template}"


def candidates(spec: OptimizeSpec) -> list[str]:
    """Every grid point of every --search spec, crossed with every --template variant; each one parsed."""
    out: list[str] = []
    for s in spec.search:
        for point in _expand(s):
            if spec.templates and "template=" in point:
                raise ConfigError("a template inside --search and --template together", where=s, field="--search",
                                  fix="give the template variants with --template only")
            out += [with_template(point, t) for t in spec.templates] if spec.templates else [point]
    for c in out:
        _parse(c, "--template" if spec.templates else "--search")
    seen = set()
    return [c for c in out if not (c in seen or seen.add(c))]


def _expand(s: str) -> list[str]:
    try:
        return expand_grid(s)
    except ConfigError as exc:
        raise ConfigError(exc.message, where=s, field="--search", fix=exc.fix) from None


def _parse(c: str, flag: str):
    try:
        return parse_strategy(c)
    except ConfigError as exc:
        raise ConfigError(exc.message, where=c, field=flag if exc.field in ("--strategy", "template") else
                          f"{flag} ({exc.field})", fix=exc.fix) from None


def split_for(spec: OptimizeSpec, task) -> SplitSpec:
    own_pool = task.spec.fewshot is not None
    val = spec.val if spec.val is not None else (0.5 if own_pool else 0.35)
    test = spec.test if spec.test is not None else (0.5 if own_pool else 0.35)
    try:
        return SplitSpec(part="val", val=val, test=test, seed=spec.split_seed,
                         max_items=spec.val_items or PRESETS[spec.preset]["val_items"])
    except ValidationError as exc:
        raise ConfigError(exc.errors()[0]["msg"].removeprefix("Value error, "), where="optimize",
                          field="--val / --test", fix="e.g. --val 0.35 --test 0.35 (train is the rest)") from None


def plan_search(spec: OptimizeSpec, *, out: Path | None = None) -> Plan:
    """Load the task, split it, render every candidate on val and apply the budget (nothing runs)."""
    from ..task.tasks import load_task

    cands = candidates(spec)
    _parse(spec.baseline, "--baseline")
    base = _run_spec(spec, strategies=tuple(cands), split=None, out=None)  # the run options, checked
    task = load_task(spec.task, data_dir=base.data_dir)
    split = split_for(spec, task)
    parts = split_ids([e.id for e in task.examples], seed=split.seed, val=split.val, test=split.test)
    _check_parts(parts, task, split)
    val_task = split_task(task, split)
    costs = {c: _val_requests(val_task, c, spec) for c in cands}
    chosen = _apply_budget(spec, cands, costs)
    sizes = {"train": len(val_task.pool), "val": len(val_task.examples), "test": len(parts["test"]),
             "val_part": len(parts["val"]), "items": len(task.examples)}
    folder = Path(out) if out else None
    val_spec = _run_spec(spec, strategies=chosen, split=split, out=str(folder / "val") if folder else None)
    return Plan(spec, task.name, split, sizes, tuple(cands), tuple(chosen), {c: costs[c] for c in chosen}, val_spec)


def _val_requests(val_task, candidate: str, spec: OptimizeSpec) -> int:
    """The requests of one candidate on the val items, from its rendered units (a bad template fails here)."""
    try:
        units = build_units([val_task], [parse_strategy(candidate)], limit=None, seed=spec.seed)
    except ConfigError as exc:
        if exc.field == "template":
            exc.field = "--template"
        raise
    return sum(len(u.requests) for u in units)


def _check_parts(parts: dict, task, split: SplitSpec) -> None:
    for part, flag in (("val", "--val"), ("test", "--test")):
        if not parts[part]:
            raise ConfigError(f"the {part} split of task {task.name} is empty ({len(task.examples)} items, "
                              f"{part} share {getattr(split, part)})", where="optimize", field=flag,
                              fix=f"give a larger {flag} share, or a task with more items")
    if task.spec.fewshot is None and not parts["train"]:
        raise ConfigError(f"no train items are left for the exemplar pool of task {task.name}", where="optimize",
                          field="--val / --test", fix="leave a share for train: --val + --test < 1")


def _apply_budget(spec: OptimizeSpec, cands: list[str], costs: dict[str, int]) -> list[str]:
    """All candidates when they fit the preset's count and the budget; else a seeded random subset (a random
    search) that does, kept in search order."""
    most = PRESETS[spec.preset]["candidates"]
    cheapest = min(costs.values())
    if spec.budget is not None and spec.budget < cheapest:
        raise ConfigError(f"budget {spec.budget} requests is below one candidate on val ({cheapest} requests)",
                          where="optimize", field="--budget",
                          fix=f"give --budget {cheapest} or more, or fewer val items (--val-items)")
    order = list(cands)
    if len(cands) > most or (spec.budget is not None and sum(costs.values()) > spec.budget):
        random.Random(f"optimize:{spec.seed}").shuffle(order)
    picked, spent = [], 0
    for c in order:
        if len(picked) < most and (spec.budget is None or spent + costs[c] <= spec.budget):
            picked.append(c)
            spent += costs[c]
    keep = set(picked)
    return [c for c in cands if c in keep]


def _run_spec(spec: OptimizeSpec, *, strategies, split, out) -> RunSpec:
    fields = {"latency_probe": 0, "latency_calibration": 0, **spec.run}  # selection is about accuracy
    for k in ("tasks", "strategies", "suite", "split", "out", "limit", "seed", "margin", "run_id"):
        if k in spec.run:
            raise ConfigError(f"'{k}' is set by the optimiser", where="optimize", field=k,
                              fix="use --task, --search, --template, --val / --test, --out, --seed, --margin")
    return RunSpec.build("optimize", tasks=(spec.task,), strategies=tuple(strategies), split=split, out=out,
                         seed=spec.seed, margin=spec.margin, **fields)


def optimize_folder(out: str | Path | None) -> Path:
    folder = Path(out) if out else RESULTS_DIR / f"optimize-{new_run_id()}"
    if folder.exists() and not folder.is_dir():
        raise ConfigError("output path exists and is not a folder", where=str(folder), field="--out",
                          fix="give a folder path")
    return folder


def read_state(folder: Path) -> dict:
    p = Path(folder) / STATE_FILE
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {STATE_FILE} ({exc})", where=str(p), field="--out",
                          fix="give another --out; this folder's optimisation cannot be resumed") from None


def open_folder(folder: Path, spec: OptimizeSpec, plan: Plan) -> dict:
    """Write optimize.json (settings, split, candidates); an optimisation with other settings in `folder`,
    or a non-empty folder that is not an optimisation, is refused. A selection already made is kept."""
    old = read_state(folder)
    if old and old.get("settings") != spec.record():
        changed = sorted(k for k in spec.record() if old.get("settings", {}).get(k) != spec.record()[k])
        raise ConfigError(f"{folder} holds an optimisation with other settings ({', '.join(changed)})",
                          where=str(folder), field="--out", fix="give a new --out, or resume it with --resume "
                                                               f"{folder} and no other flags")
    if not old and folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty and holds no {STATE_FILE}", where=str(folder), field="--out",
                          fix="give a new or empty folder")
    state = {"settings": spec.record(), "task": plan.task_name, "split": plan.split.model_dump(),
             "sizes": plan.sizes, "candidates": list(plan.candidates), "chosen": list(plan.chosen),
             "val_requests": plan.costs, "selection": old.get("selection"), "result": old.get("result")}
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / STATE_FILE, state)
    return state


def candidate_table(plan: Plan, val_preds: pd.DataFrame) -> pd.DataFrame:
    """One row per chosen candidate: val accuracy over the items answered without an error, n, requests;
    ranked (ties: fewer requests, then search order). Refused when a candidate has not read all of val."""
    rows = val_preds[val_preds["task"] == plan.task_name]
    err = rows["error"].notna() & (rows["error"].astype(str) != "")
    out = []
    for i, c in enumerate(plan.chosen):
        mine, bad = rows[rows["strategy"] == c], err[rows["strategy"] == c]
        if len(mine) < plan.sizes["val"]:
            raise ConfigError(f"candidate {c} answered {len(mine)} of {plan.sizes['val']} val items",
                              where="optimize", field="val", fix="resume the optimisation to finish the val run")
        ok = mine[~bad]
        n, k = len(ok), int(ok["correct"].fillna(False).astype(bool).sum())
        params = parse_strategy(c).params
        out.append({"candidate": c, "template": params.get("template", ""), "val_correct": k, "val_n": n,
                    "val_errors": int(bad.sum()), "val_accuracy": k / n if n else float("nan"),
                    "requests": plan.costs[c], "order": i})
    df = pd.DataFrame(out)
    df = df.sort_values(["val_accuracy", "requests", "order"], ascending=[False, True, True], na_position="last")
    df["rank"] = range(1, len(df) + 1)
    return df.drop(columns="order").reset_index(drop=True)


def select_winner(folder: Path, plan: Plan, val_preds: pd.DataFrame) -> dict:
    """Fix the winner: the best val accuracy (ties: fewer requests, then search order). Written to
    optimize.json; from then on, and only then, open_test_split() opens the test split."""
    table = candidate_table(plan, val_preds)
    best = table.iloc[0]
    selection = {"winner": best["candidate"], "val_correct": int(best["val_correct"]), "val_n": int(best["val_n"]),
                 "val_accuracy": float(best["val_accuracy"]), "candidates": len(table),
                 "mean_val_accuracy": float(table["val_accuracy"].mean()),
                 "baseline": plan.spec.baseline, "table": table.to_dict(orient="records")}
    state = read_state(folder)
    state["selection"] = selection
    write_json_atomic(Path(folder) / STATE_FILE, state)
    return selection


def open_test_split(folder: Path) -> RunSpec:
    """The run of the winner and the baseline on the test split. Raises SplitSealed until select_winner has
    fixed the winner in this folder's optimize.json."""
    state = read_state(folder)
    sel = state.get("selection")
    if not sel or not sel.get("winner"):
        raise SplitSealed("the test split is read only after the winner is fixed on val", where=str(folder),
                         field="test", fix="select on val first (harness optimize does: val run, selection, test)")
    spec = OptimizeSpec(**state["settings"])
    strategies = tuple(dict.fromkeys([sel["winner"], spec.baseline]))
    split = SplitSpec(**state["split"]).with_part("test", max_items=None, selected=strategies)
    return _run_spec(spec, strategies=strategies, split=split, out=str(Path(folder) / "test"))
