"""Price tables: $ per 1M input, cached-input and output tokens, per model.

YAML or JSON:
    SmolLM2-135M-Instruct: {input: 0.02, cached_input: 0.01, output: 0.04}
    "*": {input: 0.1, output: 0.2}          # fallback for any model
On the command line: --price MODEL=input,cached_input,output (numbers in $ per 1M tokens).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .errors import ConfigError, suggest

DEFAULT_PRICES = Path(__file__).resolve().parent.parent / "prices.yaml"  # used when none is given


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float
    output: float
    cached_input: float | None = None

    @field_validator("input", "output", "cached_input")
    @classmethod
    def non_negative(cls, v):
        if v is not None and (v < 0 or math.isnan(v)):
            raise ValueError("must be a non-negative number of $ per 1M tokens")
        return v


def load_price_table(path: str | Path) -> dict[str, Price]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError("price table not found", where=str(p), field="--prices", fix="give a YAML or JSON file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"price table is not valid YAML: {str(exc).splitlines()[0]}", where=str(p),
                          fix="fix the YAML syntax") from None
    return parse_price_table(raw, where=str(p))


def parse_price_table(raw, *, where: str) -> dict[str, Price]:
    if not isinstance(raw, dict):
        raise ConfigError("price table must map model names to prices", where=where,
                          fix="write MODEL: {input: X, output: Y}")
    out = {}
    for model, entry in raw.items():
        if not isinstance(entry, dict):
            raise ConfigError("price entry must be a mapping", where=where, field=str(model),
                              fix="write {input: X, cached_input: Y, output: Z}")
        try:
            out[str(model)] = Price.model_validate(entry)
        except ValidationError as exc:
            errs = exc.errors()
            err = next((e for e in errs if e["type"] == "extra_forbidden"), errs[0])
            key = ".".join(str(x) for x in err["loc"])
            fix = suggest(key, Price.model_fields) if err["type"] == "extra_forbidden" else "use $ per 1M tokens >= 0"
            raise ConfigError(err["msg"], where=where, field=f"{model}.{key}", fix=fix) from None
    return out


def parse_price_flag(text: str) -> dict[str, Price]:
    """'MODEL=0.1,0.05,0.4' -> {MODEL: Price(input=0.1, cached_input=0.05, output=0.4)}"""
    model, eq, nums = text.partition("=")
    parts = nums.split(",")
    try:
        vals = [float(x) for x in parts]
        if not eq or len(vals) not in (2, 3):
            raise ValueError
    except ValueError:
        raise ConfigError(f"bad price '{text}'", where=text, field="--price",
                          fix="write MODEL=input,cached_input,output in $ per 1M tokens") from None
    entry = {"input": vals[0], "output": vals[-1]}
    if len(vals) == 3:
        entry["cached_input"] = vals[1]
    return parse_price_table({model: entry}, where="--price")


def cost_function(table: dict[str, Price]) -> Callable[[str, int, int, int], float | None]:
    def cost(model: str, prompt: int, cached: int, completion: int) -> float | None:
        price = table.get(model) or table.get("*")
        if price is None:
            return None
        cached_rate = price.cached_input if price.cached_input is not None else price.input
        return ((prompt - cached) * price.input + cached * cached_rate + completion * price.output) / 1e6
    return cost

