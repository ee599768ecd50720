"""Reading a task file: YAML syntax errors and schema validation errors -> one-line ConfigErrors
that name the file, the field and the fix (an unknown key gets a 'did you mean')."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, suggest


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(key)
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load keeps the last of two equal keys silently; this refuses them."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # an unhashable key: the base loader reports it
            if key in seen:
                raise DuplicateKeyError(str(key), key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`; ConfigError for a non-UTF-8 file, bad YAML or a non-mapping."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except DuplicateKeyError as exc:
        raise ConfigError(f"key '{exc.key}' is given twice (line {exc.line})", where=str(path), field=exc.key,
                          fix="keep one of them") from None
    except UnicodeDecodeError:
        raise ConfigError("task file is not UTF-8", where=str(path), fix="re-encode the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"malformed YAML{line}: {getattr(exc, 'problem', exc)}", where=str(path),
                          fix="fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError("a task file must be a YAML mapping", where=str(path), fix="see tasks/coin_flip.yaml")
    return raw


def one_line(exc: ValidationError, path: Path, raw: dict, model: type[BaseModel]) -> ConfigError:
    """The first validation error of `model` (the root schema) as one line."""
    errs = exc.errors()
    err = next((e for e in errs if e["type"] == "extra_forbidden"), errs[0])  # a typo explains "missing"
    loc = ".".join(str(x) for x in err["loc"])
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        for part in err["loc"][:-1]:
            ann = model.model_fields.get(str(part))
            inner = ann and next((a for a in getattr(ann.annotation, "__args__", (ann.annotation,))
                                  if isinstance(a, type) and issubclass(a, BaseModel)), None)
            if inner:
                model = inner
        return ConfigError(f"unknown key '{key}'", where=str(path), field=loc, fix=suggest(key, model.model_fields))
    if err["type"] == "missing":
        return ConfigError("required field is missing", where=str(path), field=loc, fix=f"add '{loc}'")
    return ConfigError(err["msg"], where=str(path), field=loc or None, fix="see docs/tasks.md")


def check_scorer(spec: Any, path: Path) -> dict[str, Any]:
    """The task's scorer exists, suits its answer type, and its scorer_params are valid (a user
    scorer's function is imported here, so a typo fails before the engine starts)."""
    from ..scoring.scorers import SCORERS, check_params, load_user_function

    name = spec.scorer or ("json_fields" if spec.answer_type == "json" else "exact")
    where = str(path)
    if name not in SCORERS:
        raise ConfigError(f"unknown scorer '{name}'", where=where, field="scorer", fix=suggest(name, SCORERS))
    types = SCORERS[name].answer_types
    if types and spec.answer_type not in types:
        raise ConfigError(f"scorer '{name}' needs answer_type {' or '.join(types)}", where=where, field="scorer",
                          fix=f"use another scorer, or answer_type {types[0]}")
    try:
        params = check_params(name, spec.scorer_params)
    except KeyError as exc:
        key = exc.args[0]
        allowed = SCORERS[name].params
        if key in allowed:
            raise ConfigError(f"scorer '{name}' needs scorer_params.{key}", where=where, field=f"scorer_params.{key}",
                              fix=f"add {key}: package.module:function") from None
        raise ConfigError(f"unknown scorer parameter '{key}' for scorer '{name}'", where=where,
                          field=f"scorer_params.{key}",
                          fix=suggest(key, allowed) if allowed else f"scorer '{name}' takes no parameters") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad scorer parameter: {exc}", where=where, field="scorer_params",
                          fix="see docs/tasks.md (scorers)") from None
    if name == "user":
        try:
            load_user_function(params["function"])
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot import scorer '{params['function']}': {exc}", where=where,
                              field="scorer_params.function",
                              fix="check the module is importable and the function exists") from None
    return params
