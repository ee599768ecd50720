"""One mechanical step (issue 10): regroup harness/ into folders that show the data flow.

Run ONCE from the repo root, on a tree in the old flat layout, then run the whole suite:
    python scripts/regroup.py [--dry-run]
(issue 10: not applied yet; see docs/design.md)
Moves modules with `git mv`, rewrites relative imports inside harness/ (resolved from the old
location, re-expressed from the new one), rewrites dotted `harness.X` names and `harness/X.py` paths in
every text file of the repo, and fixes `Path(__file__)` depths of moved modules.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

GROUPS = {
    "task": ["tasks", "task_data", "task_file", "task_schema", "templates", "exemplars", "schemas", "generators"],
    "strategy": ["strategies", "prompt_layout", "grid", "voting"],
    "backends": ["guided", "models", "engine_versions", "cache", "serve"],
    "runs": ["api", "runner", "units", "identity", "results", "procs", "_watchdog", "provenance",
             "determinism", "probe", "latency_model", "suite", "defaults", "multimodel"],
    "scoring": ["scoring", "scorers", "extract"],
    "report": ["report", "report_format", "verdicts", "plots", "summary", "stats", "paired", "variance",
               "pricing", "matrix", "view"],
}
DOCS = {
    "task": "Tasks: the task file and its schema, data loading, item generators, prompt templates, exemplars.",
    "strategy": "Strategies: how a task item becomes requests (zero-shot, few-shot, CoT, self-consistency), "
                "grids of them, and the vote.",
    "runs": "Runs: the runner, units and their identity, the run folder (results), processes and signals, "
            "the latency probe, the default suite, and the library entry point run().",
    "scoring": "Scoring: answer extraction and the scorer table.",
    "report": "Reports: summary tables, paired statistics, verdicts, variance split, prices, plots and the "
              "HTML report.",
}
MOVE = {f"harness.{m}": f"harness.{g}.{m}" for g, ms in GROUPS.items() for m in ms if g != m or True}
MOVE = {k: v for k, v in MOVE.items() if k != v}
ROOT = Path.cwd()
SPECIAL = [('ROOT / "harness" / "engine_versions.py"', 'ROOT / "harness" / "backends" / "engine_versions.py"'),
           ('PACKAGE / "runner.py"', 'PACKAGE / "runs" / "runner.py"')]


def new_name(mod: str) -> str:
    """Map an old dotted module (or a name under it) to its new dotted name."""
    for old in sorted(MOVE, key=len, reverse=True):
        if mod == old or mod.startswith(old + "."):
            return MOVE[old] + mod[len(old):]
    return mod


def old_modules() -> dict[Path, str]:
    out = {}
    for p in (ROOT / "harness").rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[p] = ".".join(parts)
    return out


def package_of(mod: str, is_init: bool) -> str:
    return mod if is_init else mod.rsplit(".", 1)[0]


def relative(from_pkg: str, target: str) -> str:
    a, b = from_pkg.split("."), target.split(".")
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    level = len(a) - n + 1
    return "." * level + ".".join(b[n:])


def rewrite_relative_imports(path: Path, mod: str, known: set[str]) -> str:
    src = path.read_text()
    is_init = path.name == "__init__.py"
    old_pkg = package_of(mod, is_init)
    new_pkg = package_of(new_name(mod), is_init)
    lines = src.splitlines(keepends=True)
    for node in ast.walk(ast.parse(src)):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = old_pkg.split(".")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
        if node.module is None:  # from . import a, b: the names may be modules
            subs = {new_name(f"{target}.{a.name}").rsplit(".", 1)[0] for a in node.names
                    if f"{target}.{a.name}" in known}
            if len(subs) > 1:
                sys.exit(f"{path}:{node.lineno}: names moved to different packages: fix by hand")
            new_target = subs.pop() if subs else new_name(target)
        else:
            new_target = new_name(target)
        rel = relative(new_pkg, new_target)
        if rel.endswith(".") is False and node.module is None and not rel.strip("."):
            pass
        i = node.lineno - 1
        lines[i], n = re.subn(r"from\s+\.+[\w.]*\s+import", f"from {rel} import", lines[i], count=1)
        if n != 1:
            sys.exit(f"{path}:{node.lineno}: cannot find the import to rewrite")
    return "".join(lines)


def text_files():
    out = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.split()
    for f in out:
        p = ROOT / f
        if p.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".j2", ".sh", ".txt", ".cfg", ".ini"} \
                or p.name in {"run"}:
            yield p


def main(dry: bool) -> None:
    mods = old_modules()
    known = set(mods.values())
    # 1. imports inside the package, computed on the old layout
    new_src = {p: rewrite_relative_imports(p, m, known) for p, m in mods.items()}
    # 2. Path(__file__) depth for moved top-level modules
    for p, m in mods.items():
        if new_name(m) != m and m.count(".") == 1:
            new_src[p] = new_src[p].replace("Path(__file__).resolve().parent.parent",
                                            "Path(__file__).resolve().parents[2]")
    if dry:
        for p in new_src:
            if new_src[p] != p.read_text():
                print("would rewrite", p)
        return
    for p, s in new_src.items():
        p.write_text(s)
    # 3. dotted names and paths everywhere
    olds = sorted(MOVE, key=len, reverse=True)
    dotted = re.compile(r"(?<![\w.])(" + "|".join(re.escape(o) for o in olds) + r")(?![\w])")
    paths = {o.replace(".", "/") + ".py": MOVE[o].replace(".", "/") + ".py" for o in olds}
    paths.update({"harness/generators/": "harness/task/generators/",
                  "harness/templates/": "harness/report/templates/"})
    pathre = re.compile(r"(?<![\w/])(" + "|".join(re.escape(o) for o in sorted(paths, key=len, reverse=True))
                        + r")")
    for p in text_files():
        if p.suffix == ".patch" or "wip/" in str(p) or p.name == "regroup.py":
            continue
        s = p.read_text()
        t = dotted.sub(lambda m: MOVE[m.group(1)], s)
        t = pathre.sub(lambda m: paths[m.group(1)], t)
        for a, b in SPECIAL:
            t = t.replace(a, b)
        if t != s:
            p.write_text(t)
    # 4. move the files
    for g in GROUPS:
        d = ROOT / "harness" / g
        d.mkdir(exist_ok=True)
        init = d / "__init__.py"
        if not init.exists():
            init.write_text(f'"""{DOCS[g]}"""\n')
            subprocess.run(["git", "add", str(init)], check=True)
        for m in GROUPS[g]:
            src = ROOT / "harness" / (m + ".py")
            if not src.exists():
                src = ROOT / "harness" / m
            if not src.exists():
                print("not present (skipped):", m)
                continue
            subprocess.run(["git", "mv", str(src), str(d / src.name)], check=True)
    subprocess.run(["git", "mv", "harness/templates", "harness/report/templates"], check=True)
    pp = ROOT / "pyproject.toml"
    pp.write_text(pp.read_text().replace('harness = ["templates/*.j2"]', 'harness = ["report/templates/*.j2"]'))


if __name__ == "__main__":
    main("--dry-run" in sys.argv)
