"""The command line: a thin layer over the library. Every HarnessError is printed as one line, exit 2."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .backends import BACKENDS
from .backends.options import BACKEND_OPTIONS, ENGINE_OPTIONS, positive_int
from .backends.engine_log import configure as configure_engine_log
from .cli_engine import add_engine_parser, cmd_engine
from .errors import ConfigError, HarnessError

EXIT_BAD_INPUT = 2
UNTESTED_HELP = "start a vLLM release the harness is not tested with (see docs/engine.md)"


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line with exit code 2 (its own default is usage + 2)."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        raise ConfigError(message, where="command line", fix=f"see `{self.prog} --help`")


_positive = positive_int


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="harness", description="Evaluate prompting strategies on the real vLLM engine.")
    sub = p.add_subparsers(dest="cmd", parser_class=Parser)

    r = sub.add_parser("run", help="run tasks x strategies on a model and write a run folder")
    r.add_argument("experiment", nargs="?", default=None,
                   help="an experiment file (docs/experiments.md); flags given next to it override its keys")
    r.add_argument("--task", action="append", default=[], help="task name or path to a task YAML (repeatable)")
    r.add_argument("--strategy", action="append", default=[],
                   help="strategy spec, e.g. few_shot:k=4 or a grid few_shot:k={1,3},seed={0,1} (repeatable; "
                        "docs/strategies.md)")
    r.add_argument("--dry-run", action="store_true",
                   help="print the expanded strategies and the request count, then exit without starting an engine")
    r.add_argument("--model", action="append", default=[],
                   help="bundled (default), a local HF model folder, or a hub id; repeat to compare models in one "
                        "run (one engine at a time); NAME@URL asks a server model at its own base URL")
    r.add_argument("--limit", type=_positive, default=None, help="examples per task")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--race", action="store_true", help="race the strategies: stop running those shown worse (docs/race.md)")
    r.add_argument("--race-batch", type=_positive, default=16, help="items per live cell per look of --race (16)")
    r.add_argument("--max-items", type=_positive, default=None, help="items per cell at which --race stops undecided")
    r.add_argument("--race-budget", type=_positive, default=None, help="sequential halving with N item evaluations")
    r.add_argument("--race-tie", choices=("leader", "pairs"), default="leader",
                   help="--race stops with a tie when no remaining cell is --margin better than the leader "
                        "(leader, default) or when every remaining pair is within --margin (pairs)")
    r.add_argument("--data-dir", default=None, help="folder with the data files of tasks that read files")
    r.add_argument("--out", default=None, help="run folder (default results/<run_id>); an existing one resumes")
    r.add_argument("--resume", default=None, metavar="RUN_DIR", help="resume a run folder with its own config")
    r.add_argument("--retry-errors", default=None, metavar="RUN_DIR",
                   help="complete the rows of RUN_DIR that ended in an error (same as --resume)")
    r.add_argument("--no-cache", action="store_true", help="do not answer requests from the request cache")
    r.add_argument("--cache-dir", default=None, help="request cache folder (default ~/.cache/harness)")
    r.add_argument("--run-id", default=None)
    r.add_argument("--chunk-size", type=_positive, default=None, help="requests per engine call (default 512)")
    r.add_argument("--prices", default=None, help="price table YAML ($ per 1M tokens per model)")
    r.add_argument("--price", action="append", default=[], help="MODEL=input,cached_input,output")
    r.add_argument("--hourly-usd", type=float, default=None, metavar="X",
                   help="$ per hour of the machine the model runs on: $ per example = engine s per example x X / 3600")
    r.add_argument("--latency-probe", type=int, default=None, metavar="N",
                   help="after the batch, send N items per task x strategy one at a time to measure single-request "
                        "latency directly (default: none, a calibrated estimate instead; 0 = no latency measure at "
                        "all; see docs/measures.md)")
    r.add_argument("--latency-calibration", type=int, default=None, metavar="K",
                   help="calibrate the latency model on K requests per model (default 6 when the run has >= 100 "
                        "units; 0 = off); its estimates are labelled est_*")
    r.add_argument("--probe-concurrency", type=_positive, default=1, metavar="C",
                   help="send the probe's items C at a time (latency under load; server backends)")
    r.add_argument("--no-report", action="store_true", help="skip the HTML/Markdown report")
    r.add_argument("--check-determinism", action="store_true",
                   help="run a sample (--limit, default 5) twice and report any difference; writes nothing")
    r.add_argument("--quiet", action="store_true", help="print only the summary and the run folder (no progress bar, "
                   "no engine warning)")
    r.add_argument("--force", action="store_true",
                   help="into an --out that holds results of another configuration: run the changed units "
                        "next to the old ones, their strategy labelled SPEC@CONFIG")
    r.add_argument("--watch", action="store_true", help="after the run, re-run when a task, template, experiment or data "
                   "file it reads changes; print the change next to the previous verdict (docs/iterate.md)")
    r.add_argument("--verbose", action="store_true", help="show the engine's own output on stderr: its INFO logs, "
                   "progress bars and the warnings docs/engine.md explains")
    r.add_argument("--margin", type=float, default=None, metavar="M",
                   help="non-inferiority margin of the verdicts, in accuracy points (default 5; docs/statistics.md)")
    b = r.add_argument_group("backend")
    b.add_argument("--backend", choices=list(BACKENDS), default=None, help="vllm (default), openai, langchain or ray (docs/scale-out.md)")
    for opt in BACKEND_OPTIONS:
        opt.add_to(b)
    g = r.add_argument_group("engine (offline vLLM)")
    for opt in ENGINE_OPTIONS:
        opt.add_to(g)

    sub.add_parser("tasks", help="list the tasks")
    sv = sub.add_parser("serve", help="start the vLLM OpenAI-compatible server on 127.0.0.1 and print its URL")
    sv.add_argument("--model", default=None)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=0, help="0 picks a free port")
    sv.add_argument("--max-model-len", type=_positive, default=2048)
    sv.add_argument("--kv-cache-gib", type=float, default=1.0)
    sv.add_argument("--timeout", type=_positive, default=180, help="seconds to wait for health")
    sv.add_argument("--allow-untested-vllm", action="store_true", help=UNTESTED_HELP)
    sv.add_argument("--api-key-env", default=None, metavar="NAME", help="require the API key held in this environment variable (needed for a non-loopback --host)")
    sv.add_argument("--allow-remote-without-key", action="store_true", help="allow a non-loopback --host with no API key (isolated networks only; warns)")
    m = sub.add_parser("models", help="attention layout, KV bytes per token and KV capacity of a model")
    m.add_argument("model", nargs="?", default=None)
    m.add_argument("--memory", default="1GiB", help="KV-cache memory to size, e.g. 512MiB, 8GiB")

    rep = sub.add_parser("report", help="write report.html and report.md into a run folder")
    rep.add_argument("run_dir")
    rep.add_argument("--margin", type=float, default=None, metavar="POINTS", help="non-inferiority margin in accuracy points (default 5; recorded in run.json)")
    cmp_ = sub.add_parser("compare", help="compare several run folders in one report")
    cmp_.add_argument("run_dirs", nargs="+")
    cmp_.add_argument("--out", default=None)
    cmp_.add_argument("--margin", type=float, default=None, metavar="POINTS", help="non-inferiority margin in accuracy points (default 5; recorded in run.json)")
    cmp_.add_argument("--all-pairs", action="store_true",
                      help="test (and Holm-correct) every pair of strategies and runs, not only each strategy across runs")
    add_engine_parser(sub, ENGINE_OPTIONS)  # harness engine start|status|stop (cli_engine.py)
    vw = sub.add_parser("view", help="browse run folders in a local read-only web page (127.0.0.1)")
    vw.add_argument("results_dir", nargs="?", default=None, help="folder holding run folders (default results/)")
    vw.add_argument("--host", default="127.0.0.1")
    vw.add_argument("--port", type=int, default=0, help="0 picks a free port")
    vw.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (the page has no login)")
    from .cli_optimize import add_parser as add_optimize

    add_optimize(sub)  # harness optimize (harness/cli_optimize.py)
    return p


def cmd_view(a) -> int:
    from .runs.results import RESULTS_DIR
    from .reports.view import make_server, view_url

    srv = make_server(a.results_dir or RESULTS_DIR, host=a.host, port=a.port, allow_remote=a.allow_remote)
    print(view_url(srv), flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
    return 0


# flag (argparse dest) -> RunSpec field, for the flags whose field has another name or form
FLAG_FIELDS = {"task": "tasks", "strategy": "strategies", "model": "models", "no_cache": "cache"}


def spec_fields(a) -> dict:
    """The RunSpec fields that the flags give (a flag left at its default gives nothing)."""
    from .backends.options import from_namespace

    f: dict = {}
    for name in ("limit", "data_dir", "out", "run_id", "chunk_size", "cache_dir", "latency_probe",
                 "latency_calibration", "hourly_usd", "backend"):
        if getattr(a, name) is not None:
            f[name] = getattr(a, name)
    for flag, field in FLAG_FIELDS.items():
        v = getattr(a, flag)
        if v:
            f[field] = (not v) if field == "cache" else tuple(v)
    if a.seed != 0:
        f["seed"] = a.seed
    if a.probe_concurrency != 1:
        f["probe_concurrency"] = a.probe_concurrency
    if a.force:
        f["force"] = True
    if a.margin is not None:
        f["margin"] = a.margin / 100
    if engine := from_namespace(a, engine=True):
        f["engine"] = engine
    if backend := from_namespace(a, engine=False):
        f["backend_options"] = backend
    if a.prices or a.price:
        f["prices"] = _prices(a)
    return f


def _prices(a) -> dict:
    from .stats.pricing import DEFAULT_PRICES, load_price_table, parse_price_flag

    table = load_price_table(a.prices) if a.prices else (
        load_price_table(DEFAULT_PRICES) if DEFAULT_PRICES.is_file() else {})
    for flag in a.price:
        table.update(parse_price_flag(flag))
    return {k: v.model_dump(exclude_none=True) for k, v in table.items()}


def build_spec(a):
    """(the RunSpec to run, display names or None, where it came from) from the flags, an experiment file
    (flags override its keys) or --resume (no flag may change the spec)."""
    from .runs.spec import RunSpec

    given = spec_fields(a)
    resume = a.resume or a.retry_errors
    if resume:
        from .runs.resume import check_resume_flags, resume_spec

        if a.experiment:
            raise ConfigError("an experiment file next to --resume", where=a.experiment, field="--resume",
                              fix="resume with --resume RUN_DIR alone (the run keeps its own spec)")
        spec, names = resume_spec(resume)
        check_resume_flags(given, spec, resume)
        if spec.backend_from_caller:  # resumed from the command line: the backend its flags describe
            spec = RunSpec.build("command line", **{**spec.record(), "backend_from_caller": False,
                                                    **{k: given[k] for k in ("backend", "backend_options") if k in given}})
        return spec, names, {"resumed": str(resume)}
    if a.experiment:
        from .runs.experiment import load_experiment

        base, _ = load_experiment(a.experiment)
        data = {**base.record(), **given}
        if base.prices is None and "prices" not in given:
            data["prices"] = _prices(a)
        return RunSpec.build(a.experiment, **data), None, {"file": a.experiment, "overrides": sorted(given)}
    if not given.get("tasks") and not given.get("strategies") and "limit" not in given:
        from .runs.defaults import DEFAULT_LIMIT
        given["limit"] = DEFAULT_LIMIT
    if "prices" not in given:
        given["prices"] = _prices(a)
    return RunSpec.build("command line", **given), None, {"flags": sorted(spec_fields(a))}


def cmd_run(a) -> int:
    from .api import run_spec
    from .reports.summary import print_summary
    from .runs.runner import RunInterrupted

    _points(a.margin)  # a bad --margin fails before the run, not after it
    spec, names, sources = build_spec(a)
    if a.dry_run:
        return _dry_run(spec, determinism=a.check_determinism)
    if a.check_determinism:
        return _check_determinism(spec)
    if a.watch:  # harness/cli_watch.py (docs/iterate.md)
        from .cli_watch import watch
        return watch(a, build_spec)
    from .runs.race import race_flags
    try:
        if race := race_flags(a):  # harness/runs/race.py: one look at a time (docs/race.md)
            from .api import race_spec
            preds = race_spec(spec, race, progress=not a.quiet, verbose=a.verbose)
        else:
            preds = run_spec(spec, progress=not a.quiet, verbose=a.verbose, display_names=names)
    except RunInterrupted as exc:
        from .system.procs import exit_code, signal_name
        print(f"\ninterrupted ({signal_name()}): what was done is kept. Resume with:\n"
              f"  harness run --resume {exc.run_dir}", file=sys.stderr)
        print(exc.run_dir)
        return exit_code()
    run_dir = Path(preds.attrs["run_dir"])
    _record_sources(run_dir, sources)
    if not a.no_report:
        from .api import write_report_safely
        write_report_safely(run_dir, margin=_points(a.margin))
    print_summary(run_dir)  # a raced run's decisions first (harness/reports/race_report.py)
    print(run_dir)
    return 0


def _record_sources(run_dir: Path, sources: dict) -> None:
    """run.json says where the spec came from: flags, an experiment file (and which flags overrode it), a
    resume (which keeps the sources of the run it resumes)."""
    import json

    from .runs.results import write_json_atomic

    p = run_dir / "run.json"
    meta = json.loads(p.read_text(encoding="utf-8"))
    if "resumed" not in sources or not meta.get("spec_sources"):
        meta["spec_sources"] = sources
        write_json_atomic(p, meta)


def _dry_run(spec, *, determinism: bool = False) -> int:
    """Load the tasks, expand the grids, render every prompt (so bad input fails here too), count."""
    from .runs.runner import plan_run
    from .strategy.grid import format_plan, plan

    _, strategies, units = plan_run(spec, "chat")
    print(format_plan(plan(units), len(strategies)))
    models = list(spec.models) or ["bundled"]
    if len(models) > 1:
        print(f"x {len(models)} models ({', '.join(models)}), one engine at a time")
    if determinism:
        print("--check-determinism would send a sample (--limit, default 5) twice; nothing was started")
    return 0


def cmd_serve(a) -> int:
    from .backends.serve import main_serve

    return main_serve(a)


def _check_determinism(spec) -> int:
    from .api import spec_backends
    from .runs.defaults import DEFAULT_STRATEGIES, DEFAULT_TASKS
    from .runs.determinism import check_determinism

    backend, _ = spec_backends(spec)(spec.models[0] if spec.models else None, None)
    df = check_determinism(list(spec.tasks) or DEFAULT_TASKS, list(spec.strategies) or DEFAULT_STRATEGIES,
                           backend=backend, limit=spec.limit or 5, seed=spec.seed, data_dir=spec.data_dir)
    same = int(df["identical"].sum())
    print(f"determinism: {same}/{len(df)} requests gave identical outputs on two passes")
    for _, r in df[~df["identical"]].head(10).iterrows():
        print(f"  differs: {r['task']} {r['strategy']} {r['example_id']}: {r['first'][:60]!r} vs {r['second'][:60]!r}")
    return 0 if same == len(df) else 1


def cmd_tasks(a) -> int:
    from .api import tasks

    for r in tasks().itertuples():
        print(f"{r.name:22s} {r.answer_type:7s} {r.source:10s} {r.description}")
    return 0


def cmd_models(a) -> int:
    from .api import models

    print(models(a.model, memory=a.memory).attrs["text"])
    return 0


def _points(margin: float | None) -> float | None:
    """--margin in accuracy points (5) -> the share the report uses (0.05)."""
    if margin is not None and not 0 <= margin < 100:
        raise ConfigError(f"--margin {margin:g} is not in [0, 100) accuracy points", field="--margin",
                          fix="give the margin in accuracy points, e.g. --margin 5")
    return None if margin is None else margin / 100


def cmd_report(a) -> int:
    from .api import report

    for path in report(a.run_dir, margin=_points(a.margin)):
        print(path)
    return 0


def cmd_compare(a) -> int:
    from .api import compare
    from .reports.summary import folder_verdicts

    paths = compare(a.run_dirs, out=a.out, all_pairs=a.all_pairs, margin=_points(a.margin))
    print("\n".join(folder_verdicts(Path(paths[0]).parent) + [str(p) for p in paths]))  # the verdicts, then the files
    return 0


def cmd_optimize(a) -> int:
    from .cli_optimize import cmd_optimize as run_optimize

    return run_optimize(a)


COMMANDS = {"optimize": cmd_optimize, "serve": cmd_serve, "run": cmd_run, "tasks": cmd_tasks, "models": cmd_models, "report": cmd_report, "compare": cmd_compare,
            "view": cmd_view, "engine": cmd_engine}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The engine's logs go to stderr (stdout is the summary table and, last, the run folder), quieter.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
        if not a.cmd:
            parser.print_help()
            return EXIT_BAD_INPUT
        configure_engine_log(verbose=getattr(a, "verbose", False), quiet=getattr(a, "quiet", False))
        if a.cmd in ("run", "serve", "optimize"):
            from .system.procs import guard, handle_signals
            # SIGTERM / SIGHUP act like Ctrl-C, also in a background job that inherited SIGINT ignored
            handle_signals()
            guard()  # no engine or server process outlives this one, whatever ends it (docs/faults.md)
        return COMMANDS[a.cmd](a)
    except HarnessError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BaseException as exc:  # a signal, also one that library code turned into another error (procs.py)
        from .system.procs import exit_code, interrupted_by_signal, signal_name
        if not interrupted_by_signal(exc):
            raise
        print(f"\ninterrupted ({signal_name()})", file=sys.stderr)
        return exit_code()


if __name__ == "__main__":
    sys.exit(main())
