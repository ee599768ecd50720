"""Tasks: YAML files in `tasks/`, validated on load, and their data.

A task names its data source (a built-in generator, a local file under --data-dir, or a hub id),
its field mapping, template, answer type, extraction, scorer and optional output type.
See docs/tasks.md for every field. Here: the schema (TaskSpec) and the Task; reading the data is in
task_data.py, reading the YAML file and turning validation errors into one line is in task_file.py.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ..errors import ConfigError, DataError, TemplateError, suggest
from ..records import Example, OutputType
from .task_schema import load_schema, pydantic_schema
from .task_data import load_rows
from .task_file import check_scorer, one_line, read_yaml_mapping
from .templates import Template, load_template

ROOT = Path(os.environ.get("HARNESS_HOME", Path(__file__).resolve().parents[2]))
TASKS_DIR = ROOT / "tasks"
PROMPTS_DIR = ROOT / "prompts"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(Strict):
    generator: str | None = None
    params: dict[str, Any] = {}
    path: str | None = None
    hub: str | None = None
    config: str | None = None
    split: str = "test"
    sample: int | None = None  # keep a fixed random draw of this many rows (seeded by `seed`), in draw order
    seed: int = 0

    @model_validator(mode="after")
    def one_source(self):
        given = [k for k in ("generator", "path", "hub") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of 'generator', 'path' or 'hub'")
        return self


class OutputTypeSpec(Strict):
    json_schema: dict[str, Any] | str | None = None
    pydantic: str | None = None
    choice: list[str] | Literal["labels", "choices"] | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def one_kind(self):
        given = [k for k in ("json_schema", "pydantic", "choice", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'json_schema', 'pydantic', 'choice' or 'regex'")
        return self

    @field_validator("regex")
    @classmethod
    def valid_regex(cls, v: str | None) -> str | None:
        if v is not None:
            _compile(v)
        return v


class TaskSpec(Strict):
    name: str
    description: str = ""
    source: SourceSpec
    fewshot: SourceSpec | None = None
    fields: dict[str, str] = {}
    id_field: str | None = None
    gold_field: str = "answer"
    rationale_field: str | None = None
    choices_field: str | list[str] | None = None  # one column holding the list, or one column per choice
    labels_field: str | None = None
    labels: list[str] | None = None
    template: str
    templates: dict[str, str] = {}  # named template variants: name -> file (a strategy picks one with template=NAME)
    answer_type: Literal["number", "choice", "label", "text", "json"]
    extract_pattern: str | None = None
    scorer: str | None = None
    scorer_params: dict[str, Any] = {}
    extraction: Literal["flexible", "strict", "both"] = "flexible"
    output_type: OutputTypeSpec | None = None
    answer_mode: Literal["generate", "choice", "loglikelihood"] = "generate"
    format: Literal["chat", "completion"] | None = None  # None: the run's default (chat if the model has a template)
    num_fewshot: int = 0  # the protocol's fixed exemplars: the first of the pool, never the item asked
    max_tokens: int = 48
    cot_max_tokens: int = 256
    stop: list[str] = []
    limit: int | None = None

    @field_validator("name")
    @classmethod
    def safe_name(cls, v: str) -> str:
        if not SAFE_NAME.match(v):
            raise ValueError("use letters, digits, '_', '-' and '.' only")
        return v

    @field_validator("templates")
    @classmethod
    def variant_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = next((name for name in v if not SAFE_NAME.match(name)), None)
        if bad is not None:
            raise ValueError(f"variant name '{bad}': use letters, digits, '_', '-' and '.' only")
        return v

    @field_validator("num_fewshot")
    @classmethod
    def not_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be 0 or more")
        return v

    @field_validator("max_tokens", "cot_max_tokens")
    @classmethod
    def positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be a positive number of tokens")
        return v

    @field_validator("extract_pattern")
    @classmethod
    def valid_regex(cls, v: str | None) -> str | None:
        if v is not None:
            if _compile(v).groups < 1:
                raise ValueError("the pattern has no group: the answer is what its first (...) group matches")
        return v

    @field_validator("limit")
    @classmethod
    def positive_limit(cls, v: int | None) -> int | None:
        if v is not None and v <= 0:
            raise ValueError("must be a positive number of examples")
        return v

    @model_validator(mode="after")
    def consistent(self):
        if self.answer_type == "label" and not (self.labels or self.labels_field):
            raise ValueError("answer_type 'label' needs 'labels' (a list) or 'labels_field'")
        if self.answer_type == "choice" and not self.choices_field:
            raise ValueError("answer_type 'choice' needs 'choices_field'")
        if self.answer_mode != "generate" and self.answer_type not in ("choice", "label"):
            raise ValueError(f"answer_mode '{self.answer_mode}' needs answer_type 'choice' or 'label'")
        return self


@dataclass(frozen=True)
class Task:
    spec: TaskSpec
    file: Path
    template_folders: tuple[Path, ...]
    data_dir: Path | None = None
    default_format: str = "chat"  # the run's prompt format where neither the strategy nor the task names one

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def scorer(self) -> str:
        return self.spec.scorer or ("json_fields" if self.spec.answer_type == "json" else "exact")

    @cached_property
    def scorer_params(self) -> dict[str, Any]:
        return check_scorer(self.spec, self.file)

    @cached_property
    def template(self) -> Template:
        return load_template(self.spec.template, self.template_folders)

    def with_default_format(self, fmt: str) -> "Task":
        """This task with the run's default prompt format (data and template shared)."""
        if fmt == self.default_format:
            return self
        task = replace(self, default_format=fmt)
        task.__dict__.update({k: v for k, v in self.__dict__.items() if k in ("template", "examples", "pool")})
        return task

    def variant(self, value: str) -> "Task":
        """The same task and data with another template: a named variant from `templates:`, or a
        template file (looked up in the task's template folders, then relative to the current folder).
        Absolute paths, '..' and symbolic links are refused as for `template:`. Rows carry the
        variant's name (`template`) and content hash (`template_hash`)."""
        if value == self.spec.template:
            return self
        cached = self.__dict__.setdefault("_variants", {})
        if value not in cached:
            cached[value] = self._load_variant(value)
        return cached[value]

    def _load_variant(self, value: str) -> "Task":
        import jinja2

        from .templates import resolve_template

        named = self.spec.templates.get(value)
        folders = self.template_folders if named else self.template_folders + (Path.cwd().resolve(),)
        name = named or value
        try:
            resolve_template(name, folders)  # absolute, '..' and symlinks raise TemplateError here
        except jinja2.TemplateNotFound:
            variants = ", ".join(sorted(self.spec.templates)) or "none"
            raise TemplateError(f"template '{name}' not found (task {self.name}'s variants: {variants}; looked in "
                                f"{', '.join(str(f) for f in folders)})", where=str(self.file) if named else value,
                                field=f"templates.{value}" if named else "template",
                                fix="give a template file relative to the current folder or prompts/, "
                                    "or a variant name the task lists under 'templates'") from None
        template = load_template(name, folders)
        task = replace(self, spec=self.spec.model_copy(update={"template": value}))
        task.__dict__["template"] = template  # cached_property slot: the variant's template
        for shared in ("examples", "pool"):  # the data is loaded once and shared
            if shared in self.__dict__:
                task.__dict__[shared] = self.__dict__[shared]
        return task

    @cached_property
    def json_schema(self) -> dict | None:
        ot = self.spec.output_type
        if ot is None:
            return None
        if ot.json_schema is not None:
            return load_schema(ot.json_schema, self)
        if ot.pydantic is not None:
            return pydantic_schema(ot.pydantic, self)
        return None

    def output_type(self, example: Example) -> OutputType | None:
        """The guided-decoding constraint for one example (choice lists can differ per item)."""
        ot = self.spec.output_type
        if ot is None:
            return None
        if self.json_schema is not None:
            return OutputType("json", json.dumps(self.json_schema, sort_keys=True))
        if ot.choice is not None:
            values = list(example.labels) if ot.choice in ("labels", "choices") else list(ot.choice)
            return OutputType("choice", json.dumps(values))
        return OutputType("regex", ot.regex)

    @cached_property
    def examples(self) -> tuple[Example, ...]:
        rows = load_rows(self.spec.source, file=self.file, data_dir=self.data_dir, role="source")
        examples = tuple(self._to_example(r, i, "source") for i, r in enumerate(rows))
        seen: dict[str, int] = {}
        for i, ex in enumerate(examples):
            if ex.id in seen:
                raise DataError(f"item id '{ex.id}' is used by rows {seen[ex.id] + 1} and {i + 1}: results are "
                                f"kept per id", where=f"{self.file} (source data)", field=self.spec.id_field or "id",
                                fix="give every row a unique id (or set id_field to a unique column)")
            seen[ex.id] = i
        return examples

    @cached_property
    def pool(self) -> tuple[Example, ...]:
        """The few-shot exemplar pool: the `fewshot` source when given, else the task's own items
        (a strategy then skips the item being asked)."""
        if self.spec.fewshot is None:
            return self.examples
        rows = load_rows(self.spec.fewshot, file=self.file, data_dir=self.data_dir, role="fewshot")
        return tuple(self._to_example(r, i, "fewshot") for i, r in enumerate(rows))

    def _to_example(self, row: dict, i: int, role: str) -> Example:
        s = self.spec
        where = f"{self.file} ({role} data)"

        def get(col: str, field: str) -> Any:
            if col not in row:
                raise DataError(f"column '{col}' is missing from the data (columns: {', '.join(sorted(row))})",
                                where=where, field=field, fix="fix the field mapping in the task file")
            return row[col]

        variables = {var: get(col, f"fields.{var}") for var, col in s.fields.items()}
        gold = get(s.gold_field, "gold_field")
        ex_id = str(get(s.id_field, "id_field")) if s.id_field else str(row.get("id", f"{role}-{i:05d}"))
        if _empty(gold):
            raise DataError(f"row {i + 1} (id '{ex_id}') has an empty gold answer", where=where, field="gold_field",
                            fix="fill in the gold answer, or drop the row")
        choices: tuple[str, ...] = ()
        labels: tuple[str, ...] = tuple(s.labels or ())
        if isinstance(s.choices_field, list):
            choices = tuple(str(get(col, "choices_field")) for col in s.choices_field)
        elif s.choices_field:
            choices = tuple(str(c) for c in get(s.choices_field, "choices_field"))
        if s.choices_field:
            if not s.labels_field and not s.labels:
                if len(choices) > len(DEFAULT_LABELS):
                    raise DataError(f"row {i + 1} (id '{ex_id}') has {len(choices)} choices; the default labels "
                                    f"{DEFAULT_LABELS[0]}-{DEFAULT_LABELS[-1]} name only {len(DEFAULT_LABELS)}",
                                    where=where, field="choices_field", fix="give the labels (labels or labels_field)")
                labels = tuple(DEFAULT_LABELS[: len(choices)])
        if s.labels_field:
            labels = tuple(str(x) for x in get(s.labels_field, "labels_field"))
        if s.answer_type in ("label", "choice"):
            if s.answer_type == "choice" and isinstance(gold, int) and not isinstance(gold, bool) \
                    and 0 <= gold < len(labels):
                gold = labels[gold]  # a 0-based index of the gold choice (PIQA's `label`)
            gold = _canonical_label(gold, labels)
            if gold not in labels:
                raise DataError(f"row {i + 1} (id '{ex_id}'): gold '{gold}' is not one of the labels "
                                f"({', '.join(labels)})", where=where, field="gold_field",
                                fix="make the gold answer one of the labels, or fix the labels")
        rationale = str(row[s.rationale_field]) if s.rationale_field and row.get(s.rationale_field) else None
        variables.setdefault("choices", list(choices))
        variables.setdefault("labels", list(labels))
        variables.setdefault("options", "\n".join(f"{lb}. {c}" for lb, c in zip(labels, choices)))
        return Example(id=ex_id, fields=variables, gold=gold, choices=choices, labels=labels, rationale=rationale)


DEFAULT_LABELS = "ABCDEFGHIJ"


def _empty(gold: Any) -> bool:
    if gold is None:
        return True
    if isinstance(gold, float) and gold != gold:  # NaN: an empty CSV cell
        return True
    return isinstance(gold, str) and not gold.strip()


def _canonical_label(gold: Any, labels: tuple[str, ...]) -> Any:
    if isinstance(gold, bool):
        gold = "yes" if gold else "no"
    for label in labels:
        if str(gold).strip().lower() == label.lower():
            return label
    return str(gold)


def task_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(TASKS_DIR.glob("*.yaml"))}


def load_task(name_or_path: str | Path, *, data_dir: str | Path | None = None) -> Task:
    """Load a task by built-in name (tasks/NAME.yaml) or by path to a YAML file."""
    text = str(name_or_path)
    files = task_files()
    if text in files:
        path = files[text]
    elif text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError("task file not found", where=text, field="--task", fix="check the path")
    else:
        if not SAFE_NAME.match(text):
            raise ConfigError(f"'{text}' is not a valid task name", where=text, field="--task",
                              fix="use a task name from `harness tasks` or a path to a .yaml file")
        raise ConfigError(f"unknown task '{text}'", where=text, field="--task", fix=suggest(text, files))
    spec = parse_task_file(path)
    check_scorer(spec, path)
    folders = (path.parent.resolve(), (path.parent / ".." / "prompts").resolve(), PROMPTS_DIR.resolve())
    folders = tuple(dict.fromkeys(folders))
    dd = Path(data_dir).resolve() if data_dir else None
    if dd is not None and not dd.is_dir():
        raise ConfigError(f"data folder '{data_dir}' does not exist", where=str(data_dir), field="--data-dir",
                          fix="pass an existing folder")
    return Task(spec=spec, file=path, template_folders=folders, data_dir=dd)


def parse_task_file(path: Path) -> TaskSpec:
    raw = read_yaml_mapping(path)
    try:
        return TaskSpec.model_validate(raw)
    except ValidationError as exc:
        raise one_line(exc, path, raw, TaskSpec) from None

