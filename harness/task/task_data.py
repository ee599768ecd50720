"""A task's data: rows from a built-in generator, a local file under --data-dir (through `datasets`),
or the hub, with errors that name the file, the field and the fix."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, suggest
from ..system.paths import cache_dir

DATA_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def load_rows(src: Any, *, file: Path, data_dir: Path | None, role: str) -> list[dict]:
    """`src` is a task file's `source:` or `fewshot:` (harness.task.tasks.SourceSpec)."""
    where = f"{file}"
    field = role
    if src.generator:
        from .generators import GENERATORS

        if src.generator not in GENERATORS:
            raise ConfigError(f"unknown generator '{src.generator}'", where=where, field=f"{field}.generator",
                              fix=suggest(src.generator, GENERATORS))
        try:
            rows = GENERATORS[src.generator](**src.params)
        except TypeError as exc:
            raise ConfigError(f"bad generator parameters: {exc}", where=where, field=f"{field}.params",
                              fix="check the generator's parameters in docs/tasks.md") from None
    elif src.path:
        rows = _load_local(src.path, file, data_dir, field)
    else:
        rows = _load_hub(src, where, field)
    if not rows:
        raise DataError("the dataset is empty", where=where, field=field, fix="point the task at a file with rows")
    if src.sample is not None:
        import random

        rows = random.Random(src.seed).sample(rows, min(src.sample, len(rows)))
    return rows


def _load_local(rel: str, file: Path, data_dir: Path | None, field: str) -> list[dict]:
    where = str(file)
    # without --data-dir, a path is relative to the task's YAML file (a user's data sits next to it)
    base, name = (data_dir, "--data-dir") if data_dir is not None else (file.parent.resolve(),
                                                                                  "the task file's folder")
    if os.path.isabs(rel) or ".." in Path(rel).parts:
        raise DataError(f"data path '{rel}' must stay inside {name}", where=where, field=f"{field}.path",
                        fix=f"give a path relative to {name} without '..'")
    path = base / rel
    if not path.is_file():
        fix = ("check --data-dir and the task's source.path" if data_dir is not None else
               "put the file next to the task file, or pass --data-dir DIR (for example --data-dir ../shared/data)")
        raise DataError(f"data file '{path}' not found", where=where, field=f"{field}.path", fix=fix)
    kind = DATA_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"unsupported data file type '{path.suffix}'", where=str(path), field=f"{field}.path",
                        fix="use .json, .jsonl, .csv or .parquet")
    if kind != "parquet":
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"file is not UTF-8 (byte {exc.start})", where=str(path), field=f"{field}.path",
                            fix="re-encode the file as UTF-8") from None
        if not text.strip():
            raise DataError("the data file is empty", where=str(path), field=f"{field}.path",
                            fix="point the task at a file with rows")
        if kind == "json":
            _check_json(text, path, field)
    return _read_with_datasets(kind, path)


def _check_json(text: str, path: Path, field: str) -> None:
    """Find a JSON syntax error ourselves, so the message names the line (datasets' does not)."""
    try:
        json.loads(text)
        return
    except json.JSONDecodeError:
        pass
    for no, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON at line {no}: {exc.msg}", where=str(path), field=f"{field}.path",
                                fix="fix that line (JSON Lines: one object per line)") from None


def _read_with_datasets(kind: str, path: Path) -> list[dict]:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        ds = datasets.load_dataset(kind, data_files=str(path), split="train",
                                   cache_dir=str(_datasets_cache()))
    except Exception as exc:  # datasets raises many types for malformed files
        raise DataError(f"cannot read data file: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                        where=str(path), fix="check the file is valid " + kind) from None
    return [dict(r) for r in ds]


def _datasets_cache() -> Path:
    return cache_dir() / "datasets"


def _load_hub(src: Any, where: str, field: str) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(src.hub, src.config, split=src.split)
    except Exception as exc:
        raise DataError(f"cannot load hub dataset '{src.hub}': {str(exc).splitlines()[0][:200]}", where=where,
                        field=f"{field}.hub", fix="check network access, or use source.path with --data-dir") from None
    return [dict(r) for r in ds]
