"""Experiment files: `harness run experiment.yaml` (docs/experiments.md). One reviewed file holds a run's
tasks, templates, strategies, models and options; it is validated like a task file (unknown keys refused:
one line naming the file, the key and the fix) and becomes a RunSpec.

    # experiments/coin.yaml
    tasks: [coin_flip]
    strategies: [zero_shot, cot]
    templates: [default, coin_flip_terse.j2]   # each strategy once per template variant
    limit: 40
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, suggest
from .spec import RunSpec

EXPERIMENT_ONLY = ("templates",)  # keys of the file that are not RunSpec fields


def load_experiment(path: str | Path) -> tuple[RunSpec, dict[str, Any]]:
    """(the spec, the file's fields as given). Relative paths (data_dir, task files, cache_dir, out) are
    relative to the file's folder."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError("experiment file not found", where=str(p), field="experiment",
                          fix="give the path of an experiment YAML (docs/experiments.md)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid YAML: {str(exc).splitlines()[0]}", where=str(p), fix="fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError("an experiment file is a mapping of keys", where=str(p),
                          fix="write `tasks: [...]`, `strategies: [...]` and so on (docs/experiments.md)")
    known = set(RunSpec.model_fields) | set(EXPERIMENT_ONLY)
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown key '{key}'", where=str(p), field=str(key), fix=suggest(str(key), known))
    fields = _resolve_paths(dict(raw), p.parent)
    templates = fields.pop("templates", None)
    if templates is not None:
        fields = _cross_templates(fields, templates, str(p))
    return RunSpec.build(str(p), **fields), dict(raw)


def _resolve_paths(fields: dict[str, Any], base: Path) -> dict[str, Any]:
    for key in ("data_dir", "cache_dir", "out"):
        if isinstance(fields.get(key), str):
            fields[key] = str((base / fields[key]).resolve()) if not Path(fields[key]).is_absolute() else fields[key]

    def task_ref(t: Any) -> Any:
        if isinstance(t, str) and t.endswith((".yaml", ".yml")) and not Path(t).is_absolute():
            return str((base / t).resolve())
        return t
    if isinstance(fields.get("tasks"), list):
        fields["tasks"] = [task_ref(t) for t in fields["tasks"]]
    if isinstance(fields.get("suite"), dict):
        fields["suite"] = {task_ref(t): ss for t, ss in fields["suite"].items()}
    return fields


def with_template(strategy: str, template: str) -> str:
    """'few_shot:k=3' + 'terse.j2' -> 'few_shot:k=3,template=terse.j2'; 'default' keeps the task's own."""
    if template == "default":
        return strategy
    return f"{strategy}{',' if ':' in strategy else ':'}template={template}"


def _cross_templates(fields: dict[str, Any], templates: Any, where: str) -> dict[str, Any]:
    if not isinstance(templates, list) or not templates or not all(isinstance(t, str) for t in templates):
        raise ConfigError("templates must be a list of template files (or 'default')", where=where, field="templates",
                          fix="write templates: [default, my_variant.j2]")
    if fields.get("suite"):
        fields["suite"] = {t: [with_template(s, v) for s in ss for v in templates] for t, ss in fields["suite"].items()}
    else:
        fields["strategies"] = [with_template(s, v) for s in (fields.get("strategies") or ["zero_shot"])
                                for v in templates]
    return fields
