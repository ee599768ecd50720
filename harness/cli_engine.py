"""`harness engine start|status|stop`: the warm engine (harness/backends/warm*.py, docs/iterate.md).

    harness engine start [--model M] [engine options as for `harness run`] [--idle MINUTES]
    harness engine status
    harness engine stop

A later `harness run` with the same model and engine options uses the warm engine and says so in one line.
"""
from __future__ import annotations

import time


def add_engine_parser(sub, options) -> None:
    e = sub.add_parser("engine", help="keep the offline engine loaded between runs (start | status | stop)")
    esub = e.add_subparsers(dest="engine_cmd", parser_class=type(e))
    s = esub.add_parser("start", help="start the warm engine in the background and wait until it is ready")
    s.add_argument("--model", default=None, help="bundled (default), a local HF model folder, or a hub id")
    s.add_argument("--idle", type=float, default=15.0, metavar="MINUTES",
                   help="stop after this many minutes without a run (default 15)")
    g = s.add_argument_group("engine (as for harness run; a run uses the warm engine only when they match)")
    for opt in options:
        opt.add_to(g)
    esub.add_parser("status", help="say whether a warm engine runs, its model, settings and pid")
    esub.add_parser("stop", help="stop the warm engine (no process is left)")


def cmd_engine(a) -> int:
    from .backends import warm_control as control
    from .backends.options import from_namespace
    from .errors import ConfigError

    if a.engine_cmd == "start":
        if a.idle <= 0:
            raise ConfigError(f"--idle {a.idle:g} is not a positive number of minutes", field="--idle",
                              fix="give minutes, e.g. --idle 15")
        t0 = time.monotonic()
        state = control.start_engine(model=a.model, engine=from_namespace(a, engine=True), idle_s=a.idle * 60)
        print(f"warm engine ready in {time.monotonic() - t0:.1f} s: {state['model_name']}, pid {state['pid']}, "
              f"stops after {a.idle:g} min idle; runs with the same model and engine options use it")
        print(state["socket"])
        return 0
    if a.engine_cmd == "stop":
        state = control.stop_engine()
        print(f"warm engine stopped (pid {state['pid']}, {state.get('model_name')})")
        return 0
    if a.engine_cmd == "status":
        state = control.engine_status()
        if state is None:
            print("no warm engine is running")
            return 1
        s = state.get("settings") or {}
        print(f"warm engine {state['status']}: pid {state['pid']}, {state.get('model_name') or state.get('model_spec') or 'bundled'}, "
              f"dtype {s.get('dtype')}, since {state.get('ready_at') or state.get('started_at')}, "
              f"idle stop {state['idle_s'] / 60:g} min, socket {state['socket']}")
        return 0
    raise ConfigError("`harness engine` needs start, status or stop", where="command line",
                      fix="see `harness engine --help`")
