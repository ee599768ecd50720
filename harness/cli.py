"""The command line: a thin layer over the library. Every HarnessError is printed as one line, exit 2."""
from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

from .backends import BACKENDS, backend_class
from .backends.engine_log import configure as configure_engine_log
from .errors import ConfigError, HarnessError

EXIT_BAD_INPUT = 2
UNTESTED_HELP = "start a vLLM release the harness is not tested with (see docs/engine.md)"


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line with exit code 2 (its own default is usage + 2)."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        raise ConfigError(message, where="command line", fix=f"see `{self.prog} --help`")


def _engine_options(a) -> dict:
    opts = {}
    for name in ("max_model_len", "kv_cache_memory_bytes", "block_size", "kv_cache_dtype",
                 "structured_outputs_backend", "speculative_ngram", "tensor_parallel_size",
                 "pipeline_parallel_size", "distributed_executor_backend"):
        v = getattr(a, name, None)
        if v is not None:
            opts[name] = v
    if getattr(a, "no_prefix_caching", False):
        opts["enable_prefix_caching"] = False
    if getattr(a, "compiled", False):
        opts["enforce_eager"] = False
    if getattr(a, "allow_untested_vllm", False):
        opts["allow_untested_vllm"] = True
    return opts


def _positive(v: str) -> int:
    try:
        x = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{v}' is not an integer") from None
    if x <= 0:
        raise argparse.ArgumentTypeError(f"'{v}' must be a positive integer")
    return x


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="harness", description="Evaluate prompting strategies on the real vLLM engine.")
    sub = p.add_subparsers(dest="cmd", parser_class=Parser)

    r = sub.add_parser("run", help="run tasks x strategies on a model and write a run folder")
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
    r.add_argument("--verbose", action="store_true", help="show the engine's own output on stderr: its INFO logs, "
                   "progress bars and the warnings docs/engine.md explains")
    b = r.add_argument_group("backend")
    b.add_argument("--backend", choices=list(BACKENDS), default="vllm")
    b.add_argument("--base-url", action="append", default=[],
                   help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1 (repeat for data parallel)")
    b.add_argument("--api-key-env", default=None, metavar="NAME", help="environment variable holding the API key")
    b.add_argument("--concurrency", type=_positive, default=None, help="requests in flight per endpoint")
    b.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    b.add_argument("--structured", choices=["vllm", "openai"], default="vllm",
                   help="guided output as vLLM structured_outputs, or OpenAI response_format")
    b.add_argument("--request-timeout", type=_positive, default=None, metavar="S")
    b.add_argument("--max-retries", type=int, default=None)
    b.add_argument("--langchain-model", default=None, metavar="MODULE:ATTR",
                   help="a langchain-core BaseChatModel (imports MODULE: an explicit opt-in to run its code)")
    g = r.add_argument_group("engine (offline vLLM)")
    g.add_argument("--max-model-len", type=_positive)
    g.add_argument("--kv-cache-memory-bytes", type=_positive)
    g.add_argument("--block-size", type=_positive)
    g.add_argument("--kv-cache-dtype")
    g.add_argument("--no-prefix-caching", action="store_true")
    g.add_argument("--compiled", action="store_true", help="compiled mode instead of eager")
    g.add_argument("--structured-outputs-backend", choices=["auto", "xgrammar", "outlines", "guidance"])
    g.add_argument("--speculative-ngram", type=_positive, metavar="K",
                   help="n-gram (prompt lookup) speculative decoding with K speculative tokens")
    g.add_argument("--tensor-parallel-size", type=_positive)
    g.add_argument("--pipeline-parallel-size", type=_positive)
    g.add_argument("--distributed-executor-backend", choices=["mp", "ray", "uni"])
    g.add_argument("--allow-untested-vllm", action="store_true", help=UNTESTED_HELP)

    sub.add_parser("tasks", help="list the tasks")
    sv = sub.add_parser("serve", help="start the vLLM OpenAI-compatible server on 127.0.0.1 and print its URL")
    sv.add_argument("--model", default=None)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=0, help="0 picks a free port")
    sv.add_argument("--max-model-len", type=_positive, default=2048)
    sv.add_argument("--kv-cache-gib", type=float, default=1.0)
    sv.add_argument("--timeout", type=_positive, default=180, help="seconds to wait for health")
    sv.add_argument("--allow-untested-vllm", action="store_true", help=UNTESTED_HELP)
    m = sub.add_parser("models", help="attention layout, KV bytes per token and KV capacity of a model")
    m.add_argument("model", nargs="?", default=None)
    m.add_argument("--memory", default="1GiB", help="KV-cache memory to size, e.g. 512MiB, 8GiB")

    rep = sub.add_parser("report", help="write report.html and report.md into a run folder")
    rep.add_argument("run_dir")
    cmp_ = sub.add_parser("compare", help="compare several run folders in one report")
    cmp_.add_argument("run_dirs", nargs="+")
    cmp_.add_argument("--out", default=None)
    cmp_.add_argument("--all-pairs", action="store_true",
                      help="test (and Holm-correct) every pair of strategies and runs, not only each strategy across runs")
    vw = sub.add_parser("view", help="browse run folders in a local read-only web page (127.0.0.1)")
    vw.add_argument("results_dir", nargs="?", default=None, help="folder holding run folders (default results/)")
    vw.add_argument("--host", default="127.0.0.1")
    vw.add_argument("--port", type=int, default=0, help="0 picks a free port")
    vw.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (the page has no login)")
    return p


def cmd_view(a) -> int:
    from .runs.results import RESULTS_DIR
    from .report.view import make_server, view_url

    srv = make_server(a.results_dir or RESULTS_DIR, host=a.host, port=a.port, allow_remote=a.allow_remote)
    print(view_url(srv), flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
    return 0


def cmd_run(a) -> int:
    from .runs.api import write_report_safely
    from .runs.multimodel import cli_backend_factory, multi_model_resume, run_models
    from .runs.runner import RunInterrupted, run
    from .report.summary import print_summary

    recorded = multi_model_resume(a.resume or a.retry_errors) if (a.resume or a.retry_errors) else None
    models = a.model or (recorded[0] if recorded else [None])
    a.model = models[0] if len(models) == 1 and "@http" not in str(models[0]) else None

    from .report.pricing import DEFAULT_PRICES, load_price_table, parse_price_flag
    prices = load_price_table(a.prices) if a.prices else (
        load_price_table(DEFAULT_PRICES) if DEFAULT_PRICES.is_file() else {})
    for flag in a.price:
        prices.update(parse_price_flag(flag))
    kwargs = dict(tasks=a.task, strategies=a.strategy, model=a.model, limit=a.limit, seed=a.seed,
                  data_dir=a.data_dir, out=a.out, run_id=a.run_id, engine_options=_engine_options(a),
                  price_table=prices, progress=not a.quiet, cache=not a.no_cache, cache_dir=a.cache_dir,
                  force=a.force, latency_probe=a.latency_probe, latency_calibration=a.latency_calibration,
                  probe_concurrency=a.probe_concurrency,
                  hourly_usd=a.hourly_usd)
    if a.chunk_size:
        kwargs["chunk_size"] = a.chunk_size
    if a.check_determinism:
        return _check_determinism(a)
    if a.resume or a.retry_errors:
        from .runs.runner import resume_args
        kwargs.update(resume_args(a.resume or a.retry_errors, explicit={**kwargs, "backend_kind": a.backend}))
    elif not a.task and a.limit is None:
        from .runs.defaults import DEFAULT_LIMIT
        kwargs["limit"] = DEFAULT_LIMIT
    if a.dry_run:
        code = _dry_run(kwargs)
        if len(models) > 1:
            print(f"x {len(models)} models ({', '.join(str(m) for m in models)}), one engine at a time")
        return code
    if a.model is None and models != [None]:  # several models, or a server model at its own URL
        kwargs.pop("model_name", None)
        backend = None
        run = partial(run_models, models, make_backend=cli_backend_factory(a, make_backend),  # noqa: F811
                      model_names=recorded[1] if recorded and models == recorded[0] else None)
    else:
        backend = kwargs["backend"] = make_backend(a, model=kwargs["model"])
    try:
        preds = run(**kwargs)
    except RunInterrupted as exc:
        from .runs.procs import exit_code, signal_name
        backend.close()  # first: what the engine says as it stops (a Ctrl-C reaches it too) comes before this
        print(f"\ninterrupted ({signal_name()}): what was done is kept. Resume with:\n"
              f"  harness run --resume {exc.run_dir}", file=sys.stderr)
        print(exc.run_dir)
        return exit_code()
    finally:
        if backend is not None:
            backend.close()  # a clean engine shutdown (no "engine core exited unexpectedly" warning)
    run_dir = Path(preds.attrs["run_dir"])
    if not a.no_report:
        write_report_safely(run_dir)
    print_summary(run_dir)
    print(run_dir)
    return 0


def _dry_run(kw: dict) -> int:
    """Load the tasks, expand the grids, render every prompt (so bad input fails here too), count."""
    from .strategy.grid import format_plan, plan
    from .runs.runner import build_units
    from .runs.suite import plan_strategies, resolve_plan

    suite_plan = resolve_plan(kw["tasks"], kw["strategies"], kw.get("suite"), data_dir=kw["data_dir"])
    strategies = plan_strategies(suite_plan)
    units = [u for t, ss in suite_plan for u in build_units([t], ss, limit=kw["limit"], seed=kw["seed"])]
    print(format_plan(plan(units), len(strategies)))
    return 0


def make_backend(a, *, model: str | None = None):
    """The backend the flags ask for, built by its entry in harness.backends.BACKENDS."""
    if a.backend == "vllm" and (a.base_url or a.langchain_model):
        raise ConfigError("--base-url / --langchain-model need --backend openai / langchain", field="--backend",
                          fix="add --backend openai (or langchain)")
    return backend_class(a.backend).from_cli(a, model=model, engine_options=_engine_options(a))


def cmd_serve(a) -> int:
    from .backends.serve import main_serve

    return main_serve(a)


def _check_determinism(a) -> int:
    from .runs.defaults import DEFAULT_STRATEGIES, DEFAULT_TASKS
    from .runs.determinism import check_determinism

    backend = make_backend(a, model=a.model)
    df = check_determinism(a.task or DEFAULT_TASKS, a.strategy or DEFAULT_STRATEGIES, backend=backend,
                           limit=a.limit or 5, seed=a.seed, data_dir=a.data_dir)
    same = int(df["identical"].sum())
    print(f"determinism: {same}/{len(df)} requests gave identical outputs on two passes")
    for _, r in df[~df["identical"]].head(10).iterrows():
        print(f"  differs: {r['task']} {r['strategy']} {r['example_id']}: {r['first'][:60]!r} vs {r['second'][:60]!r}")
    return 0 if same == len(df) else 1


def cmd_tasks(a) -> int:
    from .task.tasks import load_task, task_files

    for name, path in task_files().items():
        spec = load_task(path).spec
        src = spec.source.generator and "generated" or spec.source.path and "--data-dir" or "hub"
        print(f"{name:22s} {spec.answer_type:7s} {src:10s} {spec.description}")
    return 0


def cmd_models(a) -> int:
    from .backends.models import describe_model

    print(describe_model(a.model, memory=a.memory))
    return 0


def cmd_report(a) -> int:
    from .report.report import write_report

    for path in write_report(a.run_dir):
        print(path)
    return 0


def cmd_compare(a) -> int:
    from .report.report import write_compare

    verdicts: list[str] = []
    paths = write_compare(a.run_dirs, out=a.out, all_pairs=a.all_pairs, verdict_lines=verdicts)
    print("\n".join(verdicts + [str(p) for p in paths]))  # the verdict sentences, then the files (the last lines)
    return 0


COMMANDS = {"serve": cmd_serve, "run": cmd_run, "tasks": cmd_tasks, "models": cmd_models, "report": cmd_report, "compare": cmd_compare,
            "view": cmd_view}


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
        if a.cmd in ("run", "serve"):
            from .runs.procs import guard, handle_signals
            # SIGTERM / SIGHUP act like Ctrl-C, also in a background job that inherited SIGINT ignored
            handle_signals()
            guard()  # no engine or server process outlives this one, whatever ends it (docs/faults.md)
        return COMMANDS[a.cmd](a)
    except HarnessError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        from .runs.procs import exit_code, signal_name
        print(f"\ninterrupted ({signal_name()})", file=sys.stderr)
        return exit_code()


if __name__ == "__main__":
    sys.exit(main())
