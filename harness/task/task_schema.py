"""JSON schemas of a task's guided output: a schema file or inline schema, validated; or a pydantic class
named by import path (an explicit opt-in)."""
from __future__ import annotations

import json
from typing import Any

from ..errors import ConfigError


def load_schema(value: dict | str, task: Any) -> dict:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    where = str(task.file)
    if isinstance(value, str):
        path = (task.file.parent / value)
        if not path.is_file() and task.data_dir is not None:
            path = task.data_dir / value
        if not path.is_file():
            raise ConfigError(f"schema file '{value}' not found", where=where, field="output_type.json_schema",
                              fix="give a path relative to the task file or --data-dir, or an inline schema")
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"schema file '{path}' is not valid JSON: {exc}", where=where,
                              field="output_type.json_schema", fix="fix the JSON") from None
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise ConfigError(f"invalid JSON schema: {exc.message}", where=where, field="output_type.json_schema",
                          fix="make it a valid JSON Schema (draft 2020-12)") from None
    return value


# Module names that task files written before the regroup into stage folders still use. One explicit entry
# each, resolved here only (no import hook): `harness.schemas:Person` in person_json.yaml keeps the task's
# text, and so its task hash and the unit identities of run folders written with it (docs/tasks.md).
SCHEMA_MODULES = {"harness.schemas": "harness.task.schemas"}


def pydantic_schema(import_path: str, task: Any) -> dict:
    """Opt-in: imports `module:Class` (code named by the user, never by data) and returns its JSON schema."""
    import importlib

    where, field = str(task.file), "output_type.pydantic"
    mod_name, _, attr = import_path.partition(":")
    if not mod_name or not attr:
        raise ConfigError(f"'{import_path}' is not of the form module:Class", where=where, field=field,
                          fix="write it as package.module:ClassName")
    try:
        cls = getattr(importlib.import_module(SCHEMA_MODULES.get(mod_name, mod_name)), attr)
        return cls.model_json_schema()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import '{import_path}': {exc}", where=where, field=field,
                          fix="check the module is importable and the class exists") from None
