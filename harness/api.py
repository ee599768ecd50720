"""The library: every CLI command is a call here that returns a DataFrame or paths.

    import harness
    df = harness.run(tasks=["coin_flip"], strategies=["zero_shot", "cot"], limit=20, report=True)

| CLI                           | library                                                   |
|-------------------------------|-----------------------------------------------------------|
| harness run [flags]           | harness.run(**kwargs) (keyword = flag: cache=False is --no-cache; docs/experiments.md) |
| harness run experiment.yaml   | harness.run_spec(harness.load_experiment(path)[0])       |
| harness optimize [flags]      | harness.optimize(task, search, ...) -> DataFrame (optimize.csv) |
| harness report RUN_DIR        | harness.report(run_dir) -> [paths]                        |
| harness compare A B           | harness.compare([a, b]) -> [paths]                        |
| harness tasks                 | harness.tasks() -> DataFrame                              |
| harness models [M]            | harness.models(model) -> DataFrame                        |

The runner (harness/runs/) writes rows; the report stage (harness/reports/) aggregates them: this module
joins the two, so neither imports the other's layer upward.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .backends import backend_class
from .backends.base import Backend
from .backends.options import RAY_OPTIONS, backend_namespace, engine_call
from .errors import ConfigError
from .runs.multimodel import run_spec as _run_models
from .runs.runner import RunInterrupted
from .runs.spec import RunSpec


def run(tasks: Sequence[Any] = (), strategies: Sequence[Any] = (), *, backend: Backend | str | None = None,
        model: str | None = None, models: Sequence[str] | None = None, engine_options: dict | None = None,
        price_table: dict | None = None, progress: bool = True, verbose: bool = False, report: bool = False,
        write_report: bool | None = None, model_name: str | None = None, judges: dict | None = None,
        **fields: Any) -> pd.DataFrame:
    """Run tasks x strategies (or `suite={task: [strategy, ...]}`; nothing: the default suite) and return the
    predictions DataFrame (df.attrs['run_dir'] is the run folder). Every keyword is a RunSpec field
    (harness/runs/spec.py), named as its flag: limit, seed, data_dir, out, run_id, cache, cache_dir,
    latency_probe, latency_calibration, probe_concurrency, hourly_usd, margin, chunk_size, force, ...
    `model` / `models`: one or several models (bundled, a folder, NAME@URL), run one after another into one
    folder. `backend`: a backend object (the caller closes it), a factory `(model, base_url) -> backend`
    (each is closed after its model) or a backend name ("vllm", "openai", ...).
    `report=True` also writes report.html, report.md and pairs.csv, as the CLI does."""
    if model is not None and models:
        raise ConfigError("give model or models, not both", field="models", fix="put every model in models=[...]")
    obj = backend if backend is not None and not isinstance(backend, str) else None
    if obj is not None:
        from .backends import BACKENDS

        kind = getattr(obj, "name", None)
        fields.update(backend_from_caller=True, backend_kind=kind if kind in BACKENDS else "vllm")
    spec = RunSpec.build(
        "harness.run", tasks=tuple(tasks), strategies=tuple(strategies),
        models=tuple(models or ([model] if model else [])), engine=engine_options or fields.pop("engine", {}),
        backend=backend if isinstance(backend, str) else fields.pop("backend_kind", "vllm"),
        prices=_plain_prices(price_table), **fields)
    return run_spec(spec, backend=obj, progress=progress, verbose=verbose,
                    report=write_report if write_report is not None else report,
                    display_names=[model_name] if model_name else None, judges=judges)


def run_spec(spec: RunSpec, *, backend: Backend | None = None, progress: bool = True, verbose: bool = False,
             report: bool = False, display_names: Sequence[str] | None = None,
             judges: dict | None = None) -> pd.DataFrame:
    """Run a RunSpec (from harness.run, the CLI's flags or an experiment file), then write the run folder's
    summary tables, and with `report=True` the report."""
    from .reports.tables import write_tables
    from .system.procs import deferred

    try:
        preds = _run_models(spec, spec_backends(spec, backend), progress=progress, verbose=verbose,
                            display_names=display_names, judges=judges)
    except RunInterrupted as exc:
        if (exc.run_dir / "predictions.parquet").is_file():
            with deferred():
                write_tables(exc.run_dir)
        raise
    run_dir = Path(preds.attrs["run_dir"])
    with deferred():
        write_tables(run_dir, preds)
    if report:
        write_report_safely(run_dir)
    return preds


def race_spec(spec: RunSpec, race: dict, *, backend: Backend | None = None, progress: bool = True,
              verbose: bool = False, report: bool = False) -> pd.DataFrame:
    """Race a RunSpec's strategies (harness/runs/race.py; `race`: batch, max_items, budget, alpha,
    control), then write the summary tables as run_spec does."""
    from .reports.tables import write_tables
    from .runs.race import run_race
    from .system.procs import deferred

    try:
        preds = run_race(spec, spec_backends(spec, backend), progress=progress, verbose=verbose, **race)
    except RunInterrupted as exc:
        if (exc.run_dir / "predictions.parquet").is_file():
            with deferred():
                write_tables(exc.run_dir)
        raise
    with deferred():
        write_tables(Path(preds.attrs["run_dir"]), preds)
    if report:
        write_report_safely(Path(preds.attrs["run_dir"]))
    return preds


def optimize(task: str | None = None, search: Sequence[str] = (), *, templates: Sequence[str] = (),
             baseline: str = "zero_shot", preset: str | None = None, budget: int | None = None,
             val: float | None = None, test: float | None = None, val_items: int | None = None, split_seed: int = 0,
             seed: int = 0, margin: float = 0.05, out: str | Path | None = None, resume: str | Path | None = None,
             backend: Backend | str | None = None, model: str | None = None, progress: bool = True,
             verbose: bool = False, **run: Any) -> pd.DataFrame:
    """`harness optimize`: search `search` (strategy specs and grids) x `templates` on a val split of the task's
    items, fix the winner, then read the test split once for the winner and `baseline` (harness/runs/optimize.py,
    docs/optimize.md). `run`: RunSpec fields of the runs (data_dir, cache, cache_dir, prices, engine, ...).
    `resume`: an optimise folder, continued with its own settings. Returns optimize.csv's table; attrs:
    run_dir (the optimise folder), result (the figures and `sentence`)."""
    from .runs.optimize import (DEFAULT_PRESET, OptimizeSpec, open_folder, open_test_split, optimize_folder,
                                plan_search, read_state, select_winner)

    if resume is not None:
        state = read_state(Path(resume))
        if not state:
            raise ConfigError("no optimize.json in the folder", where=str(resume), field="--resume",
                              fix="give a folder that `harness optimize` wrote")
        spec, folder = OptimizeSpec(**state["settings"]), Path(resume)
    else:
        if isinstance(backend, str):
            run["backend"] = backend
        elif backend is not None:
            from .backends import BACKENDS

            kind = getattr(backend, "name", None)
            run.update(backend_from_caller=True, backend=kind if kind in BACKENDS else "vllm")
        if model:
            run["models"] = (model,)
        spec = OptimizeSpec.build(task=task, search=tuple(search), templates=tuple(templates), baseline=baseline,
                                  preset=preset or DEFAULT_PRESET, budget=budget, val=val, test=test,
                                  val_items=val_items, split_seed=split_seed, seed=seed, margin=margin, run=run)
        folder = optimize_folder(out)
    plan = plan_search(spec, out=folder)
    state = open_folder(folder, spec, plan)
    obj = backend if backend is not None and not isinstance(backend, str) else None
    models = list(plan.val_spec.models) or [None]
    if len(models) > 1:
        raise ConfigError("an optimisation takes one model", field="--model", fix="give one --model")
    from .runs.multimodel import split_model_spec

    engine, owned = spec_backends(plan.val_spec, obj)(*split_model_spec(models[0]))
    try:
        val_preds = run_spec(plan.val_spec, backend=engine, progress=progress, verbose=verbose)
        select_winner(folder, plan, val_preds)
        test_preds = run_spec(open_test_split(folder), backend=engine, progress=progress, verbose=verbose)
    finally:
        if owned:
            engine.close()
    return _optimize_report(folder, plan, test_preds)


def _optimize_report(folder: Path, plan, test_preds: pd.DataFrame) -> pd.DataFrame:
    """The report stage of an optimisation, and the winner written to be used again (a pinned spec, its
    template as a named variant file, winner.yaml; the LangChain prompt when langchain_core is installed)."""
    import json
    import os

    from .reports.optimize import optimize_table, write_optimize
    from .runs.optimize import read_state
    from .runs.optimize_winner import pinned_spec, template_file, with_variant
    from .runs.results import write_text_atomic
    from .task.splits import split_task
    from .task.tasks import load_task

    state = read_state(folder)
    winner = state["selection"]["winner"]
    val_task = split_task(load_task(plan.spec.task, data_dir=plan.val_spec.data_dir), plan.split)
    pinned, ids, note = pinned_spec(val_task, winner, run_seed=plan.spec.seed)
    tpl = template_file(val_task, winner, folder)
    usable = with_variant(pinned, "optimized")
    rel = os.path.relpath(tpl)  # a template= path is read relative to the current folder; absolute is refused
    by_file = with_variant(pinned, rel) if not rel.startswith("..") else usable
    write_text_atomic(folder / "winner.yaml", "\n".join([
        f"# harness optimize: the winner of {plan.task_name} ({note})",
        f"# add to the task file:   templates: {{optimized: {tpl.name}}}   (copy {tpl.name} next to it)",
        f"task: {json.dumps(plan.spec.task)}", f"strategy: {json.dumps(usable)}",
        f"strategy_with_template_file: {json.dumps(by_file)}",
        f"measured_as: {json.dumps(winner)}", f"exemplar_ids: {json.dumps(ids)}",
        "experiment:", f"  tasks: [{json.dumps(plan.spec.task)}]", f"  strategies: [{json.dumps(by_file)}]",
        ""]))
    extra = {"pinned_spec": pinned, "pinned_note": note, "exemplar_ids": ids, "template_file": str(tpl),
             "langchain": _export_langchain(val_task, winner, folder)}
    result = write_optimize(folder, state, test_preds, extra=extra)
    table = optimize_table(state | {"result": result}, test_preds)
    table.attrs.update(run_dir=str(folder), result=result)
    return table


def _export_langchain(val_task, winner: str, folder: Path) -> str | None:
    """The winner as a LangChain ChatPromptTemplate (exemplars inline), saved as JSON; None without langchain_core."""
    import json

    from .lc_export import to_chat_prompt_template
    from .runs.results import write_text_atomic

    try:
        tpl = to_chat_prompt_template(val_task, winner)
    except ImportError:
        return None
    path = folder / "winner_langchain.json"
    msgs = [{"type": m.__class__.__name__, "template": m.prompt.template} for m in tpl.messages]
    write_text_atomic(path, json.dumps({"template_format": "jinja2", "messages": msgs}, indent=2))
    return str(path)


def spec_backends(spec: RunSpec, given: Backend | None = None):
    """The backend factory of a spec: `given` (owned by the caller) or one built per model from the spec's
    backend name and options (owned: the run closes it)."""
    def make(model: str | None, url: str | None) -> tuple[Any, bool]:
        if given is not None and not isinstance(given, Backend) and callable(given):
            return given(model, url), True  # a factory: each model's backend, closed after its model
        if given is not None:
            return given, False
        opts = dict(spec.backend_options)
        if spec.backend == "vllm" and (opts.get("base_url") or opts.get("langchain_model")):
            raise ConfigError("--base-url / --langchain-model need --backend openai / langchain", field="--backend",
                              fix="add --backend openai (or langchain)")
        if spec.backend != "ray" and (given_ray := [k for k in RAY_OPTIONS if opts.get(k) is not None]):
            flag = "--" + given_ray[0].replace("_", "-")
            raise ConfigError(f"{flag} needs --backend ray", field=flag, fix="add --backend ray, or drop " + flag)
        if url:
            opts["base_url"] = [url]
        cls = backend_class(spec.backend)
        made = cls.from_cli(backend_namespace(opts, model=model), model=model, engine_options=engine_call(spec.engine))
        from .backends.warm import attach
        return attach(made), True  # the warm engine when one matches exactly (docs/iterate.md)
    return make


def report(run_dir: str | Path, *, margin: float | None = None) -> list[Path]:
    """`harness report RUN_DIR`: write report.html, report.md, pairs.csv and decisions.csv; return their
    paths. `margin`: the non-inferiority margin as a share (0.05 = 5 points; default: run.json's, else 0.05)."""
    from .reports.report import write_report

    return write_report(run_dir, margin=margin)


def compare(run_dirs: Sequence[str | Path], *, out: str | Path | None = None, all_pairs: bool = False,
            margin: float | None = None) -> list[Path]:
    """`harness compare A B ...`: one report over several run folders; return its paths."""
    from .reports.report import write_compare

    return write_compare(list(run_dirs), out=out, all_pairs=all_pairs, margin=margin)


def tasks() -> pd.DataFrame:
    """`harness tasks`: name, answer type, data source and description of every task."""
    from .task.tasks import load_task, task_files

    rows = []
    for name, path in task_files().items():
        spec = load_task(path).spec
        src = spec.source.generator and "generated" or spec.source.path and "--data-dir" or "hub"
        rows.append({"name": name, "answer_type": spec.answer_type, "source": src, "description": spec.description,
                     "file": str(path)})
    return pd.DataFrame(rows, columns=["name", "answer_type", "source", "description", "file"])


def models(model: str | None = None, *, memory: str = "1GiB") -> pd.DataFrame:
    """`harness models [MODEL]`: the model's attention layout, KV bytes per token and KV capacity (one row;
    df.attrs['text'] is what the CLI prints)."""
    from .backends.models import describe_model, model_info, parse_memory, kv_tokens_fitting, resolve_model

    path, name = resolve_model(model)
    info = dict(model_info(path))
    info.update(model=name, path=path, memory=memory, kv_tokens=kv_tokens_fitting(info, parse_memory(memory)))
    df = pd.DataFrame([info])
    df.attrs["text"] = describe_model(model, memory=memory)
    return df


def write_report_safely(run_dir: Path, *, margin: float | None = None) -> list[Path]:
    """Write the report of a finished run; on failure print one warning (the run is complete) and return []."""
    from .errors import ConfigError

    try:
        return report(run_dir, margin=margin)
    except ConfigError:  # a bad margin is the user's to fix, not a report bug
        raise
    except Exception as exc:  # the results are safe on disk; a report bug must not lose the run
        print(f"warning: the report could not be written ({type(exc).__name__}: {exc}); "
              f"the results are complete. Retry with: harness report {run_dir}", file=sys.stderr)
        return []


def _plain_prices(table: dict | None) -> dict | None:
    if table is None:
        return None
    return {k: (v.model_dump(exclude_none=True) if hasattr(v, "model_dump") else dict(v)) for k, v in table.items()}
