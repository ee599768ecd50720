"""`RunSpec`: one frozen, validated record of what a run is. The CLI builds it from flags, `harness.run(...)`
from keyword arguments and `harness run experiment.yaml` from a file (harness/runs/experiment.py); the runner
takes it; run.json stores it (`spec`); `--resume` reads it back, so a resumed run is the run it was.

    >>> RunSpec(tasks=("coin_flip",), strategies=("zero_shot", "cot"), limit=20).limit
    20
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_serializer, field_validator, model_validator

from ..backends.options import check_options
from ..errors import ConfigError, suggest
from ..task.splits import SplitSpec

SPEC_FILE_KEY = "spec"  # run.json's key


def check_margin(v: float) -> float:
    """The verdicts' margin, a share of accuracy (a pydantic validator of RunSpec and OptimizeSpec)."""
    if not 0 <= v < 1:
        raise ValueError("give the margin as a share of accuracy, 0 <= margin < 1 (0.05 = 5 points)")
    return v

# Fields that do not change what a run is: they may differ between a run and its resume.
PRESENTATION = ("out", "run_id")


class RunSpec(BaseModel):
    """What a run is. Every field has the meaning of the `harness run` flag of the same name
    (docs/experiments.md has the table: `cache=False` is `--no-cache`, `engine={...}` the engine flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    tasks: tuple[Any, ...] = ()  # names or task file paths (a library caller may pass Task objects)
    strategies: tuple[Any, ...] = ()  # specs, grids allowed (a library caller may pass Strategy objects)
    suite: dict[str, tuple[str, ...]] | None = None  # each task with its own strategies (the default suite)
    models: tuple[str, ...] = ()  # () = the bundled model; NAME@URL = a server model at its own URL
    limit: int | None = None
    seed: int = 0
    data_dir: str | None = None
    engine: dict[str, Any] = {}  # harness.backends.options.ENGINE_OPTIONS
    backend: str = "vllm"
    backend_options: dict[str, Any] = {}  # harness.backends.options.BACKEND_OPTIONS
    backend_from_caller: bool = False  # harness.run(backend=obj): the backend is the caller's, not described here
    cache: bool = True
    cache_dir: str | None = None
    latency_probe: int | None = None
    latency_calibration: int | None = None
    probe_concurrency: int = 1
    prices: dict[str, dict[str, Any]] | None = None  # a price table (harness/stats/pricing.py), inline
    hourly_usd: float | None = None
    margin: float = 0.05  # the verdicts' non-inferiority margin (accuracy, 0.05 = 5 points)
    chunk_size: int | None = None
    retry_errors: bool = True
    force: bool = False
    split_groups: bool = True
    split: SplitSpec | None = None  # ask only one part of each task's items (harness/task/splits.py; optimize)
    out: str | None = None
    run_id: str | None = None

    @field_validator("data_dir", "cache_dir", "out", mode="before")
    @classmethod
    def _path(cls, v):
        return str(v) if isinstance(v, Path) else v

    @field_validator("tasks", "models", mode="before")
    @classmethod
    def _paths(cls, v):
        return tuple(str(x) if isinstance(x, Path) else x for x in v) if isinstance(v, (list, tuple)) else v

    @field_validator("tasks", "strategies")
    @classmethod
    def _refs(cls, v):
        for x in v:
            if not isinstance(x, str) and not hasattr(x, "spec"):
                raise ValueError(f"{x!r} is neither a name nor a task / strategy object")
        return v

    @field_serializer("tasks", "strategies")
    def _names(self, v):
        """run.json records a Task object as its file and a Strategy object as its spec string."""
        return [x if isinstance(x, str) else str(x.file) if hasattr(x, "file") else x.spec for x in v]

    @field_validator("suite", mode="before")
    @classmethod
    def _suite_paths(cls, v):
        return {str(k): v[k] for k in v} if isinstance(v, dict) else v

    @field_validator("limit", "chunk_size")
    @classmethod
    def _positive(cls, v):
        if v is not None and v <= 0:
            raise ValueError("must be a positive integer")
        return v

    @field_validator("probe_concurrency")
    @classmethod
    def _at_least_one(cls, v):
        if v < 1:
            raise ValueError("must be at least 1")
        return v

    @field_validator("latency_probe", "latency_calibration")
    @classmethod
    def _non_negative(cls, v):
        if v is not None and v < 0:
            raise ValueError("must be 0 or more")
        return v

    @field_validator("margin")
    @classmethod
    def _margin(cls, v):
        return check_margin(v)

    @field_validator("backend")
    @classmethod
    def _backend(cls, v):
        from ..backends import BACKENDS

        if v not in BACKENDS:
            raise ValueError(f"unknown backend '{v}'; {suggest(v, BACKENDS)}")
        return v

    @model_validator(mode="after")
    def _options(self):
        check_options(self.engine, engine=True, where="engine")
        check_options(self.backend_options, engine=False, where="backend_options")
        if self.prices is not None:
            from ..stats.pricing import parse_price_table

            parse_price_table(self.prices, where="prices")
        if self.suite is not None and (self.tasks or self.strategies):
            raise ValueError("give either a suite or tasks and strategies, not both")
        if self.split is not None and self.split.part == "test":
            named = [x if isinstance(x, str) else x.spec for x in self.strategies]
            if self.suite is not None or not set(named) <= set(self.split.selected):
                raise ValueError("the test split is read only for the strategies selected on val "
                                 f"({', '.join(self.split.selected)})")
        return self

    # ---- reading and writing
    @classmethod
    def build(cls, where: str = "run", **fields: Any) -> "RunSpec":
        """Validate, turning pydantic's error into one line naming the field and the fix (exit 2)."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise spec_error(exc, where) from None
        except ConfigError as exc:  # an engine / backend option, checked by its table
            exc.where = where
            raise

    def record(self) -> dict[str, Any]:
        """The JSON form run.json stores."""
        return json.loads(self.model_dump_json())

    @classmethod
    def from_record(cls, data: dict[str, Any], where: str) -> "RunSpec":
        return cls.build(where, **data)

    def differs(self, other: "RunSpec") -> list[str]:
        """Fields (other than PRESENTATION) whose values differ."""
        a, b = self.record(), other.record()
        return [k for k in a if k not in PRESENTATION and a[k] != b[k]]

    def price_table(self) -> dict | None:
        from ..stats.pricing import parse_price_table

        return parse_price_table(self.prices, where="prices") if self.prices else None


def spec_error(exc: ValidationError, where: str) -> ConfigError:
    err = exc.errors()[0]
    field = ".".join(str(x) for x in err["loc"]) or "spec"
    if err["type"] == "extra_forbidden":
        return ConfigError(f"unknown key '{field}'", where=where, field=field,
                           fix=suggest(field.split(".")[-1], RunSpec.model_fields))
    msg = err["msg"].removeprefix("Value error, ")
    if where == "command line":  # name the flag the user typed
        top = field.split(".")[0]
        flag = "--" + {"tasks": "task", "strategies": "strategy", "models": "model"}.get(top, top).replace("_", "-")
        return ConfigError(msg, where=where, field=flag, fix=f"see `harness run --help` ({flag})")
    return ConfigError(msg, where=where, field=field, fix="see docs/experiments.md for the field's values")


def read_spec(run_dir: str | Path) -> RunSpec | None:
    """The spec a run folder's run.json recorded (None: a folder written before specs existed)."""
    p = Path(run_dir) / "run.json"
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    data = meta.get(SPEC_FILE_KEY) if isinstance(meta, dict) else None
    return RunSpec.from_record(data, str(p)) if isinstance(data, dict) else None
