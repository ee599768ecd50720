"""Price tables: $ per 1M input, cached-input and output tokens (API models), or $ per hour of the
machine (self-hosted models), per model.

YAML or JSON:
    gpt-4o-mini: {input: 0.15, cached_input: 0.075, output: 0.60}
    SmolLM2-135M-Instruct: {hourly_usd: 2.50}   # a rented GPU: $ per example = engine s / 3600 x 2.50
    "*": {input: 0.1, output: 0.2}          # fallback for any model
On the command line: --price MODEL=input,cached_input,output (numbers in $ per 1M tokens), and
--hourly-usd X for the run's model (wins over the table). With an hourly price, a row's `cost_usd` is its
share of the group's measured engine time x the hourly price (docs/measures.md); token prices are not
used for that model.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ..errors import ConfigError, suggest

DEFAULT_PRICES = Path(__file__).resolve().parents[2] / "prices.yaml"  # used when none is given


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    hourly_usd: float | None = None  # self-hosted: $ per hour of the machine the engine runs on

    @field_validator("input", "output", "cached_input", "hourly_usd")
    @classmethod
    def non_negative(cls, v):
        if v is not None and (v < 0 or math.isnan(v) or math.isinf(v)):
            raise ValueError("must be a non-negative number ($ per 1M tokens, or $ per hour)")
        return v

    @model_validator(mode="before")
    @classmethod
    def some_price(cls, data):
        if isinstance(data, dict) and set(data) <= set(cls.model_fields) \
                and not ({"input", "output"} <= set(data) or "hourly_usd" in data):
            raise ValueError("give input and output ($ per 1M tokens) or hourly_usd ($ per hour)")
        return data


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
            fix = suggest(key, Price.model_fields) if err["type"] == "extra_forbidden" else (
                "write {input: X, output: Y} or {hourly_usd: Z}" if not key else "use $ per 1M tokens (or $ per hour) >= 0")
            raise ConfigError(err["msg"], where=where, field=f"{model}.{key}" if key else str(model), fix=fix) from None
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


def check_hourly(value: float | None) -> None:
    if value is not None and (value < 0 or math.isnan(value) or math.isinf(value)):
        raise ConfigError(f"bad hourly price {value}", where="command line", field="--hourly-usd",
                          fix="give a non-negative number of $ per hour, e.g. --hourly-usd 2.50")


def hourly_price(table: dict[str, Price] | None, model: str, override: float | None = None) -> float | None:
    """$ per hour for a self-hosted model: --hourly-usd, else the table's entry (or "*"), else None."""
    if override is not None:
        check_hourly(override)
        return float(override)
    price = (table or {}).get(model) or (table or {}).get("*")
    return price.hourly_usd if price is not None else None


def cost_function(table: dict[str, Price]) -> Callable[[str, int, int, int], float | None]:
    def cost(model: str, prompt: int, cached: int, completion: int) -> float | None:
        price = table.get(model) or table.get("*")
        if price is None:
            return None
        cached_rate = price.cached_input if price.cached_input is not None else price.input
        return ((prompt - cached) * price.input + cached * cached_rate + completion * price.output) / 1e6
    return cost

