"""`harness optimize`: the command line of harness.api.optimize (docs/optimize.md).

    harness optimize --task coin_flip --search "few_shot:k={1,3,5},seed={0..3}" --template "{coin_flip.j2,terse}" \\
        --preset light --out results/opt-coin
"""
from __future__ import annotations

import sys

from .backends import BACKENDS
from .backends.options import BACKEND_OPTIONS, ENGINE_OPTIONS, positive_int
from .errors import ConfigError


def add_parser(sub) -> None:
    from .runs.optimize import DEFAULT_PRESET, PRESETS

    o = sub.add_parser("optimize", help="search strategies x templates on a val split, report the winner once on test")
    o.add_argument("--task", default=None, help="task name or path to a task YAML")
    o.add_argument("--search", action="append", default=[],
                   help="strategy spec or grid to search, e.g. few_shot:k={0,1,3,5},seed={0..7} (repeatable)")
    o.add_argument("--template", action="append", nargs="+", default=[],
                   help="template variants to cross with the search: names or files, or a list {a,b,c} (repeatable)")
    o.add_argument("--baseline", default="zero_shot", help="the strategy the winner is compared with on test")
    o.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="candidates x val items: " + ", ".join(f"{k} {v['candidates']} x {v['val_items']}"
                                                                   for k, v in PRESETS.items()) + f" (default {DEFAULT_PRESET})")
    o.add_argument("--budget", type=positive_int, default=None, help="the most requests the search spends on val")
    o.add_argument("--val", type=float, default=None, help="val share of the task's items (default 0.35; 0.5 with "
                   "its own few-shot source)")
    o.add_argument("--test", type=float, default=None, help="test share of the task's items (as --val)")
    o.add_argument("--val-items", type=positive_int, default=None, help="the most val items read (default: the preset's)")
    o.add_argument("--split-seed", type=int, default=0, help="seed of the hash split")
    o.add_argument("--seed", type=int, default=0, help="the runs' seed and the seed of the random search")
    o.add_argument("--margin", type=float, default=None, metavar="POINTS", help="non-inferiority margin (default 5)")
    o.add_argument("--model", default=None, help="bundled (default), a local model folder, or NAME@URL")
    o.add_argument("--data-dir", default=None)
    o.add_argument("--out", default=None, help="the optimise folder (default results/optimize-<id>); the same "
                   "command with the same --out resumes")
    o.add_argument("--resume", default=None, metavar="DIR", help="continue an optimise folder with its own settings")
    o.add_argument("--no-cache", action="store_true")
    o.add_argument("--cache-dir", default=None)
    o.add_argument("--quiet", action="store_true")
    o.add_argument("--verbose", action="store_true")
    b = o.add_argument_group("backend")
    b.add_argument("--backend", choices=list(BACKENDS), default=None)
    for opt in BACKEND_OPTIONS:
        opt.add_to(b)
    g = o.add_argument_group("engine (offline vLLM)")
    for opt in ENGINE_OPTIONS:
        opt.add_to(g)


def templates(values: list[list[str]]) -> list[str]:
    """--template a --template b c --template {d,e} -> [a, b, c, d, e]."""
    out = []
    for v in (x for group in values for x in group):
        v = v.strip()
        out += [t.strip() for t in v[1:-1].split(",")] if v.startswith("{") and v.endswith("}") else [v]
    if any(not t for t in out):
        raise ConfigError("an empty template name", field="--template", fix="write --template {a,b} or --template a")
    return out


def run_fields(a) -> dict:
    from .backends.options import from_namespace

    f: dict = {}
    if a.data_dir:
        f["data_dir"] = a.data_dir
    if a.no_cache:
        f["cache"] = False
    if a.cache_dir:
        f["cache_dir"] = a.cache_dir
    if engine := from_namespace(a, engine=True):
        f["engine"] = engine
    if backend := from_namespace(a, engine=False):
        f["backend_options"] = backend
    return f


def cmd_optimize(a) -> int:
    from .api import optimize
    from .runs.runner import RunInterrupted

    if a.margin is not None and not 0 <= a.margin < 100:
        raise ConfigError(f"--margin {a.margin:g} is not in [0, 100) accuracy points", field="--margin",
                          fix="give the margin in accuracy points, e.g. --margin 5")
    if a.resume and (a.task or a.search or a.template):
        raise ConfigError("--resume continues a folder with its own settings", field="--resume",
                          fix=f"run: harness optimize --resume {a.resume}")
    if not a.resume and not a.task:
        raise ConfigError("no task", field="--task", fix="give --task NAME (a task from `harness tasks`)")
    kw = dict(templates=templates(a.template), baseline=a.baseline, preset=a.preset, budget=a.budget, val=a.val,
              test=a.test, val_items=a.val_items, split_seed=a.split_seed, seed=a.seed,
              margin=0.05 if a.margin is None else a.margin / 100, out=a.out, resume=a.resume, backend=a.backend,
              model=a.model, progress=not a.quiet, verbose=a.verbose, **run_fields(a))
    try:
        table = optimize(a.task, a.search, **kw)
    except RunInterrupted as exc:
        from .system.procs import exit_code, signal_name

        folder = exc.run_dir.parent
        print(f"\ninterrupted ({signal_name()}): what was done is kept. Resume with:\n"
              f"  harness optimize --resume {folder}", file=sys.stderr)
        print(folder)
        return exit_code()
    r = table.attrs["result"]
    print(table.head(12).to_string(index=False))
    print(f"optimize: {r['sentence']}")
    print(f"winner, to run again: {r['pinned_spec']} (winner.yaml, {r['template_file']})")
    print(table.attrs["run_dir"])
    return 0
