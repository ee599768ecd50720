"""Imports point down the data flow (docs/design.md "Layers"): every import in harness/ — module level,
inside functions, under TYPE_CHECKING — goes to the same layer or below, and no set of modules imports
each other in a circle. Read from the source with ast, so an import that only runs on one path counts."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_structure import _cycles  # the SCC finder the structure test already checks

ROOT = Path(__file__).resolve().parent.parent / "harness"

# bottom -> top; a module may import from its own layer or any layer below it
LAYERS = [
    ("records", "errors"),
    ("scoring", "stats"),
    ("system",),
    ("task",),
    ("strategy",),
    ("backends",),
    ("runs",),
    ("reports",),
    ("api", "cli", "cli_optimize", "cli_engine", "cli_watch", "lc_export", "__init__", "__main__"),
]


def layer_of(module: str) -> int:
    """'harness.runs.runner' -> the index of the layer holding 'runs'."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: its folder {top!r} has no layer; add it to LAYERS and docs/design.md")


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] if len(parts) > 1 else parts
    return ".".join(parts)


def imports_of(path: Path, root: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported harness module) for every import statement in the file, at any depth."""
    mod = module_name(path, root)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from . import runner` imports a module; `from .x import name` imports x
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        out += [(node.lineno, t) for t in targets if t == "harness" or t.startswith("harness.")]
    return out


def graph(root: Path = ROOT) -> dict[str, list[tuple[int, str]]]:
    files = sorted(root.rglob("*.py"))
    known = {module_name(p, root) for p in files}
    return {module_name(p, root): imports_of(p, root, known) for p in files}


def climbing(root: Path = ROOT) -> list[str]:
    bad = []
    for mod, imps in graph(root).items():
        for line, target in imps:
            if target == "harness" or target == mod:
                continue
            if layer_of(target) > layer_of(mod):
                bad.append(f"{mod}:{line} imports {target} (layer {layer_of(target)} > {layer_of(mod)})")
    return bad


def cycles(root: Path = ROOT) -> list[list[str]]:
    """Strongly connected components of more than one module, over every import (test_structure's Tarjan)."""
    g = graph(root)
    return _cycles({m: {t for _, t in imps if t in g and t != m} for m, imps in g.items()})


def test_no_import_climbs_the_layers():
    assert climbing() == []


def test_no_import_cycle():
    assert cycles() == []


def test_every_folder_has_a_layer():
    for p in ROOT.rglob("*.py"):
        layer_of(module_name(p))


def _copy(tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "harness"
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.mark.parametrize("where,line", [
    ("task/tasks.py", "from ..runs.results import RESULTS_DIR\n"),                  # module level
    ("strategy/voting.py", "def f():\n    from ..reports import stats\n"),         # inside a function
    ("scoring/extract.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..task.tasks import Task\n"),
])
def test_a_climbing_import_fails_the_check(tmp_path, where, line):
    root = _copy(tmp_path)
    f = root / where
    f.write_text(f.read_text(encoding="utf-8") + "\n" + line, encoding="utf-8")
    assert climbing(root), "the check missed an import that climbs"


def test_a_cycle_fails_the_check(tmp_path):
    root = _copy(tmp_path)
    f = root / "scoring" / "extract.py"
    f.write_text(f.read_text(encoding="utf-8") + "\ndef g():\n    from .scoring import score\n", encoding="utf-8")
    assert cycles(root), "the check missed a cycle"
