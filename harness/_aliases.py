"""The flat layout's module names keep importing after the regroup into stage folders (issue 10).

`import harness.strategies` gives the module `harness.strategy.strategies` itself (the same object,
so `isinstance` and monkeypatching agree), and so for every module that moved. Code written against
the first release (`from harness.scorers import SCORERS`, `from harness.report import write_report`)
keeps working. The two flat modules whose names are now folders, `harness.report` and
`harness.scoring`, forward their old names from the folder (see `forward` below)."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

# flat name -> folder (the stage it belongs to in the data flow)
STAGES = {
    "task": ("tasks", "task_data", "task_file", "task_schema", "templates", "exemplars", "schemas", "generators"),
    "strategy": ("strategies", "prompt_layout", "grid", "voting"),
    "backends": ("guided", "models", "engine_versions", "cache", "serve"),
    "runs": ("api", "runner", "units", "identity", "results", "procs", "_watchdog", "provenance", "determinism",
             "probe", "latency_model", "suite", "defaults", "multimodel"),
    "scoring": ("scoring", "scorers", "extract"),
    "report": ("report", "report_format", "verdicts", "plots", "summary", "paired", "variance", "pricing",
               "matrix", "view"),  # not "stats": harness.stats is the pure-statistics package now (issue 21)
}
MOVED = {f"harness.{m}": f"harness.{stage}.{m}" for stage, mods in STAGES.items() for m in mods
         if m != stage}  # harness.report and harness.scoring are folders now: see forward()


def new_name(fullname: str) -> str | None:
    """The module's name in the regrouped package, or None when it did not move."""
    for old, new in MOVED.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old):]
    return None


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if not fullname.startswith("harness.") or new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(new_name(spec.name))

    def exec_module(self, module) -> None:  # already executed under its new name
        pass


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())  # before the path finder: a moved folder's submodules too


def forward(package: str, module: str, name: str) -> Any:
    """Module `__getattr__` of a folder that replaced a flat module of the same name: the old module's
    names (`harness.report.write_report`) resolve from the module now inside the folder."""
    mod = importlib.import_module(f"{package}.{module}")
    try:
        return getattr(mod, name)
    except AttributeError:
        raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
