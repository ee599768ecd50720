"""What `harness run --watch` watches: the files a run reads, and which of them changed.

    files = watched_files(spec, experiment="experiments/coin.yaml")
    before = snapshot(files)
    ...
    changed(before, snapshot(files))     # ['prompts/coin_flip.j2']

The files: the experiment file, each task's YAML file, its template and the variants its strategies name,
and its local data files (`source.path`, `fewshot.path`, from --data-dir or next to the task file). A file
counts as changed when its content hash changes (an editor that rewrites the same bytes changes nothing);
the hash is read only when the size or the modification time moved. Generated and hub data are not files.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .spec import RunSpec
from .suite import resolve_plan

Snapshot = dict[Path, tuple[int, int, str | None]]


def watched_files(spec: RunSpec, *, experiment: str | os.PathLike | None = None) -> list[Path]:
    """Every file the spec's run reads (existing ones), sorted and without repeats."""
    out: set[Path] = set()
    if experiment:
        out.add(Path(experiment).resolve())
    for task, strategies in resolve_plan(spec.tasks, spec.strategies, spec.suite, data_dir=spec.data_dir):
        out.add(Path(task.file).resolve())
        out.add(Path(task.template.path).resolve())
        for s in strategies:
            if "template" in s.params:
                out.add(Path(task.variant(s.params["template"]).template.path).resolve())
        for src in (task.spec.source, task.spec.fewshot):
            if src is not None and src.path:
                base = Path(task.data_dir) if task.data_dir else Path(task.file).resolve().parent
                out.add((base / src.path).resolve())
    return sorted(p for p in out if p.is_file())


def _digest(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def snapshot(files: list[Path], before: Snapshot | None = None) -> Snapshot:
    """{path: (size, mtime_ns, sha256)}; the hash is reused from `before` while size and mtime stay."""
    out: Snapshot = {}
    for p in files:
        try:
            st = p.stat()
        except OSError:
            out[p] = (-1, -1, None)
            continue
        old = (before or {}).get(p)
        same = old is not None and old[:2] == (st.st_size, st.st_mtime_ns)
        out[p] = (st.st_size, st.st_mtime_ns, old[2] if same else _digest(p))
    return out


def changed(before: Snapshot, after: Snapshot) -> list[Path]:
    """The files whose content differs (or that appeared or vanished)."""
    return sorted(p for p in set(before) | set(after)
                  if (before.get(p) or (0, 0, None))[2] != (after.get(p) or (0, 0, None))[2])
