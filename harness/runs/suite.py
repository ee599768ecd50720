"""What a run runs: every task x every strategy, or a suite, in which each task has its own strategies.

`harness run` with no --task and no --strategy runs the default suite (harness/runs/defaults.py); the library
call `run(suite={task: [strategy, ...]})` runs any suite."""
from __future__ import annotations

from typing import Mapping, Sequence

from ..errors import ConfigError
from ..strategy.strategies import Strategy, parse_strategy
from ..task.tasks import Task, load_task

Plan = list[tuple[Task, tuple[Strategy, ...]]]


def resolve_plan(tasks: Sequence[str | Task] = (), strategies: Sequence[str | Strategy] = (),
                 suite: Mapping[str, Sequence[str]] | None = None, *, data_dir=None) -> Plan:
    """(task, its strategies) in order. No tasks, strategies or suite: the default suite; tasks or
    strategies alone are crossed with the default ones."""
    from .defaults import DEFAULT_STRATEGIES, DEFAULT_SUITE, DEFAULT_TASKS

    if suite is not None and (tasks or strategies):
        raise ConfigError("give either a suite or tasks and strategies, not both", field="suite",
                          fix="put the tasks and strategies into the suite")
    if suite is None and not tasks and not strategies:
        suite = DEFAULT_SUITE
    if suite is not None:
        if not suite:
            raise ConfigError("the suite is empty", field="suite", fix="give at least one task")
        return _distinct_names([(_task(t, data_dir), _strategies(ss)) for t, ss in suite.items()])
    strats = _strategies(strategies or DEFAULT_STRATEGIES)
    return _distinct_names([(_task(t, data_dir), strats) for t in (tasks or DEFAULT_TASKS)])


def _distinct_names(plan: Plan) -> Plan:
    """Two task files with the same `name:` would pool their rows into one group: refused, naming both."""
    seen: dict[str, Task] = {}
    for t, _ in plan:
        if t.name in seen:
            raise ConfigError(f"two tasks are named '{t.name}': {seen[t.name].file} and {t.file}",
                              where=str(t.file), field="name",
                              fix="give each task file its own `name:` (an edited copy needs a new name)")
        seen[t.name] = t
    return plan


def plan_strategies(plan: Plan) -> list[Strategy]:
    """Every strategy of a plan once, in first-seen order."""
    return list({s.spec: s for _, ss in plan for s in ss}.values())


def _task(t: str | Task, data_dir) -> Task:
    return t if isinstance(t, Task) else load_task(t, data_dir=data_dir)


def _strategies(specs: Sequence[str | Strategy]) -> tuple[Strategy, ...]:
    objs = tuple(parse_strategies(specs))
    names = [s.spec for s in objs]
    if len(set(names)) != len(names):
        raise ConfigError("the same strategy is given twice", where=", ".join(names), field="--strategy",
                          fix="give each strategy once")
    if not objs:
        raise ConfigError("a suite task has no strategies", field="suite", fix="give each task a strategy")
    return objs


def suite_config(plan, strategies) -> dict:
    """A plan that is not every task x every strategy is recorded as a suite, so that resume runs it again."""
    if all(len(ss) == len(strategies) for _, ss in plan):
        return {}
    return {"suite": {t.name: [s.spec for s in ss] for t, ss in plan}}


def parse_strategies(specs: Sequence[str | Strategy]) -> list[Strategy]:
    """Grid specs (k={1,3}) expanded first (harness/strategy/grid.py), then each one parsed."""
    from ..strategy.grid import expand_grid

    out: list[Strategy] = []
    for s in specs:
        out.extend([s] if isinstance(s, Strategy) else [parse_strategy(x) for x in expand_grid(s)])
    return out
