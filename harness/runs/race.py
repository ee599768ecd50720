"""`harness run ... --race`: the race of harness/stats/race.py driven through the runner, one look at
a time, into one run folder.

Each look is one `runner.run_model(...)` call with `select=` the units the race asks for next (the next batch
of items in the shared seeded order, for the live cells of each task), on one engine kept open across
looks. Everything that ran is a normal journaled row (scored, priced, in the request cache), so an
interrupted race resumes like any run: the race is a pure replay of the rows in the folder, so the
same order and the same rows give the same eliminations. After every look the folder gets race.csv
(every look of every task: items, running accuracy, bounds against the leader, eliminations) and
race.json (the settings, needed to resume with the same decisions, and each task's decision).

    spec = RunSpec.build(tasks=("coin_flip",), strategies=("zero_shot", "cot", "few_shot:k=3"), limit=400)
    preds = run_race(spec, harness.api.spec_backends(spec))   # harness.api.race_spec does this
    preds.attrs["race"]   # {task: {"status": ..., "winner": ..., "sentence": ...}}
"""
from __future__ import annotations

import json
from pathlib import Path
import pandas as pd

from ..errors import ConfigError
from ..stats.race import TIES, race, race_order, race_sentence
from . import runner
from .results import run_folder, write_frame_atomic, write_json_atomic

SETTINGS = ("mode", "batch", "alpha", "margin", "max_items", "budget", "seed", "control", "tie")


def race_settings(*, batch: int = 16, margin: float = 0.05, max_items: int | None = None,
                  budget: int | None = None, alpha: float = 0.05, seed: int = 0, control: str = "all",
                  tie: str = "leader") -> dict:
    if batch < 1:
        raise ConfigError(f"must be >= 1, got {batch}", field="--race-batch", fix="give items per cell per look, e.g. 16")
    if not 0 <= margin < 1:
        raise ConfigError(f"must lie in [0, 1), got {margin}", field="--margin", fix="an accuracy difference, e.g. 0.05")
    if budget is not None and budget < 1:
        raise ConfigError(f"must be >= 1, got {budget}", field="--race-budget", fix="total item evaluations")
    if tie not in TIES:
        raise ConfigError(f"unknown tie rule {tie!r}", field="tie", fix=f"one of {', '.join(TIES)}")
    return {"mode": "halving" if budget else "sequential", "batch": batch, "alpha": alpha, "margin": margin,
            "max_items": max_items, "budget": budget, "seed": seed, "control": control, "tie": tie}


def _tables(preds: pd.DataFrame, task: str, items: list, cells: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """items x cells: 1/0 correct (NaN not run or errored), and which (item, cell) ran."""
    rows = preds[preds["task"] == task]
    if rows.empty:
        return (pd.DataFrame(float("nan"), index=items, columns=cells),
                pd.DataFrame(False, index=items, columns=cells))
    errored = rows["error"].notna() & (rows["error"].astype(str) != "")
    correct = rows["correct"].astype(float).where(~errored)
    table = pd.DataFrame({"example_id": rows["example_id"], "cell": rows["strategy"], "correct": correct})
    wide = table.pivot_table(index="example_id", columns="cell", values="correct", aggfunc="first", dropna=False)
    ran = pd.crosstab(rows["example_id"], rows["strategy"]).astype(bool)
    return (wide.reindex(index=items, columns=cells).astype(float),
            ran.reindex(index=items, columns=cells).fillna(False).astype(bool))


def run_race(spec, backends, *, batch: int = 16, max_items: int | None = None, budget: int | None = None,
             alpha: float = 0.05, control: str = "all", tie: str = "leader", progress: bool = False,
             verbose: bool = False) -> pd.DataFrame:
    """Race the strategies of each task of a RunSpec (one model) and return the predictions (attrs:
    run_dir, race). `backends(model, base_url) -> (backend, owned)` as harness.runs.multimodel takes it;
    the margin is the spec's (the verdicts' margin). Each look runs through `runner.run_model` with the
    latency probe and calibration off (they would run at every look). `tie`: "leader" (the leader within the
    margin of every remaining cell) or "pairs" (every remaining pair within it), harness/stats/race.py."""
    from .multimodel import split_model_spec
    from .suite import resolve_plan

    models = list(spec.models) or [None]
    if len(models) > 1:
        raise ConfigError("a race takes one model", field="--race", fix="race the strategies of one --model")
    plan = resolve_plan(spec.tasks, spec.strategies, spec.suite, data_dir=spec.data_dir)
    run_dir = run_folder(spec.out, spec.run_id)
    settings = race_settings(batch=batch, margin=spec.margin, max_items=max_items, budget=budget, alpha=alpha,
                             seed=spec.seed, control=control, tie=tie)
    recorded = run_dir / "race.json"
    if recorded.is_file():  # a resume: the recorded settings, so the decisions are the same
        old = json.loads(recorded.read_text(encoding="utf-8"))["settings"]
        # a race.json without a tie rule was written when "pairs" was the only one
        settings = {k: old.get(k, "pairs" if k == "tie" else v) for k, v in settings.items()}
    cells, orders = {}, {}
    for task, strats in plan:
        cells[task.name] = [s.spec for s in strats]
        if len(cells[task.name]) < 2:
            raise ConfigError(f"task {task.name} has one strategy: a race needs two or more cells",
                              field="--race", fix="give two or more --strategy values")
        items = [ex.id for ex in task.examples[: (spec.limit or task.spec.limit or len(task.examples))]]
        orders[task.name] = race_order(items, settings["seed"])
    look_spec = spec.model_copy(update={"latency_probe": 0, "latency_calibration": 0})
    name, url = split_model_spec(models[0])
    backend, owned = backends(name, url)
    preds = pd.DataFrame(columns=["task", "strategy", "example_id", "correct", "error"])
    try:
        while True:
            results = _replay(preds, orders, cells, settings)
            _write(run_dir, settings, results)
            wanted = {(t, c, i) for t, r in results.items() if r.status == "running"
                      for c in r.remaining for i in r.next_items}
            if not wanted:
                break
            preds = runner.run_model(look_spec, backend, model=name, run_dir=run_dir, progress=progress,
                                     verbose=verbose, select=lambda *unit: unit in wanted)
    finally:
        if owned:
            backend.close()
    preds.attrs["run_dir"] = str(run_dir)
    preds.attrs["race"] = {t: _decision(r, settings) for t, r in results.items()}
    return preds


def raced(folder) -> bool:
    """True for a run folder that a race wrote (a resume races again, with its recorded settings)."""
    return bool(folder) and (Path(folder) / "race.json").is_file()


def race_flags(a) -> dict | None:
    """The CLI's race options (--race, --race-batch, --max-items, --race-budget, --race-tie), or None for an ordinary
    run; a resumed raced folder races again (its race.json holds the settings)."""
    if not (a.race or a.race_budget or raced(a.resume or a.retry_errors)):
        return None
    return {"batch": a.race_batch, "max_items": a.max_items, "budget": a.race_budget, "tie": a.race_tie}


def _replay(preds: pd.DataFrame, orders: dict, cells: dict, settings: dict) -> dict:
    out = {}
    for task, order in orders.items():
        table, ran = _tables(preds, task, order, cells[task])
        out[task] = race(table, order=order, ran=ran, mode=settings["mode"], batch=settings["batch"],
                         alpha=settings["alpha"], margin=settings["margin"], max_items=settings["max_items"],
                         budget=settings["budget"], control=settings["control"], tie=settings["tie"])
    return out


def _decision(result, settings: dict) -> dict:
    return {"status": result.status, "winner": result.winner, "best": result.best,
            "remaining": list(result.remaining), "items": result.items, "evaluations": result.evaluations,
            "eliminated": result.eliminated, "sentence": race_sentence(result, margin=settings["margin"], tie=settings["tie"])}


def _write(run_dir: Path, settings: dict, results: dict) -> None:
    if not any(len(r.looks) for r in results.values()):
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    looks = pd.concat([r.looks.assign(task=t) for t, r in results.items()], ignore_index=True)
    write_frame_atomic(looks[["task"] + [c for c in looks.columns if c != "task"]], run_dir / "race.csv")
    write_json_atomic(run_dir / "race.json", {"settings": settings,
                                              "tasks": {t: _decision(r, settings) for t, r in results.items()}})
