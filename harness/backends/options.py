"""The options of a run's backend, declared once: each entry gives the flag, its type, default and help,
and the keyword it becomes. `harness run`'s flags, experiment files and `harness.run(engine=...)` are all
built from these two tables, and the offline engine is called with `engine_call(options)`.

    >>> engine_call({"no_prefix_caching": True, "block_size": 16})
    {'enable_prefix_caching': False, 'block_size': 16}
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError, suggest


def positive_int(v: Any) -> int:
    """An integer > 0 (a flag's type and an experiment file's check)."""
    try:
        x = int(v)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"'{v}' is not an integer") from None
    if x <= 0 or (isinstance(v, float) and v != x):
        raise argparse.ArgumentTypeError(f"'{v}' must be a positive integer")
    return x


@dataclass(frozen=True)
class Option:
    """One option: `name` is its key (RunSpec.engine / RunSpec.backend_options, experiment files), the flag
    is `--name-with-dashes`. A switch (`type=None`) is a store_true flag; it sets the keyword `to` to `value`
    (`--no-prefix-caching` sets enable_prefix_caching=False). `to` defaults to `name`."""

    name: str
    help: str
    type: Callable[[Any], Any] | None = str
    choices: tuple[str, ...] | None = None
    to: str | None = None
    value: Any = True
    repeat: bool = False  # a list: the flag may be given several times

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def add_to(self, group: Any) -> None:
        if self.type is None:
            group.add_argument(self.flag, dest=self.name, action="store_true", help=self.help)
        elif self.repeat:
            group.add_argument(self.flag, dest=self.name, action="append", default=None, type=self.type,
                               help=self.help)
        else:
            group.add_argument(self.flag, dest=self.name, type=self.type, choices=self.choices, default=None,
                               help=self.help)

    def check(self, value: Any, where: str) -> Any:
        """The value of an experiment file or a keyword argument, checked as the flag would be."""
        try:
            if self.type is None:
                if not isinstance(value, bool):
                    raise ValueError("must be true or false")
                return value
            values = list(value) if self.repeat and isinstance(value, (list, tuple)) else [value]
            checked = [self.type(v) for v in values]
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ConfigError(f"bad value {value!r}: {exc}", where=where, field=self.name,
                              fix=f"see `harness run --help` ({self.flag})") from None
        if self.choices and any(v not in self.choices for v in checked):
            raise ConfigError(f"bad value {value!r}", where=where, field=self.name,
                              fix="one of " + ", ".join(self.choices))
        return checked if self.repeat else checked[0]


ENGINE_OPTIONS: tuple[Option, ...] = (
    Option("max_model_len", "context length of the engine (default 2048)", positive_int),
    Option("kv_cache_memory_bytes", "KV-cache memory in bytes (CPU default 1 GiB)", positive_int),
    Option("block_size", "KV-cache block size in tokens (CPU default 32; docs/engine.md)", positive_int),
    Option("kv_cache_dtype", "KV-cache dtype (auto, fp8, ...)"),
    Option("no_prefix_caching", "turn off automatic prefix caching", None, to="enable_prefix_caching", value=False),
    Option("compiled", "compiled mode instead of eager", None, to="enforce_eager", value=False),
    Option("structured_outputs_backend", "guided decoding backend", choices=("auto", "xgrammar", "outlines", "guidance")),
    Option("speculative_ngram", "n-gram (prompt lookup) speculative decoding with K speculative tokens", positive_int),
    Option("tensor_parallel_size", "tensor parallel size (GPUs)", positive_int),
    Option("pipeline_parallel_size", "pipeline parallel size", positive_int),
    Option("distributed_executor_backend", "executor for TP/PP", choices=("mp", "ray", "uni")),
    Option("dtype", "model dtype (default: bfloat16 on a GPU or a CPU with bf16 instructions, else float32; docs/engine.md)",
           choices=("bfloat16", "float16", "float32", "auto")),
    Option("allow_untested_vllm", "start a vLLM release the harness is not tested with (see docs/engine.md)", None),
)

BACKEND_OPTIONS: tuple[Option, ...] = (
    Option("base_url", "OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1 (repeat for data parallel)",
           repeat=True),
    Option("api_key_env", "environment variable holding the API key"),
    Option("concurrency", "requests in flight per endpoint", positive_int),
    Option("endpoint", "chat or completions", choices=("chat", "completions")),
    Option("structured", "guided output as vLLM structured_outputs, or OpenAI response_format",
           choices=("vllm", "openai")),
    Option("request_timeout", "seconds per request", positive_int),
    Option("max_retries", "retries of a failed request", int),
    Option("langchain_model", "a langchain-core BaseChatModel as MODULE:ATTR (imports MODULE: an explicit opt-in)"),
    Option("replicas", "--backend ray: engines (Ray actors), each one offline vLLM engine (default 1)", positive_int),
    Option("ray_address", "--backend ray: HOST:PORT of a Ray cluster, auto (the one `ray start` runs here) or "
           "local (a cluster of its own, stopped after the run; the default)"),
    Option("replica_cpus", "--backend ray: CPUs each replica asks Ray for (default 1)", positive_int),
    Option("replica_gpus", "--backend ray: GPUs each replica asks Ray for (default: tensor x pipeline parallel "
           "size on a cluster with GPUs, else 0)", int),
)
RAY_OPTIONS = ("replicas", "ray_address", "replica_cpus", "replica_gpus")
BACKEND_DEFAULTS = {"base_url": [], "endpoint": "chat", "structured": "vllm"}

_ENGINE = {o.name: o for o in ENGINE_OPTIONS}
_BACKEND = {o.name: o for o in BACKEND_OPTIONS}


def check_options(values: dict[str, Any] | None, *, engine: bool, where: str) -> dict[str, Any]:
    """Known keys only, each value checked as its flag would be; switches that are off are dropped."""
    table, field = (_ENGINE, "engine") if engine else (_BACKEND, "backend_options")
    out = {}
    for k, v in (values or {}).items():
        if k not in table:
            raise ConfigError(f"unknown {field} option '{k}'", where=where, field=f"{field}.{k}",
                              fix=suggest(k, table))
        if v is None or (table[k].type is None and v is False):
            continue
        out[k] = table[k].check(v, where)
    return out


def from_namespace(a: argparse.Namespace, *, engine: bool) -> dict[str, Any]:
    """The options given on the command line (flags left at their default are not given)."""
    table = ENGINE_OPTIONS if engine else BACKEND_OPTIONS
    return {o.name: getattr(a, o.name) for o in table
            if getattr(a, o.name, None) not in (None, False, [])}


def engine_call(options: dict[str, Any]) -> dict[str, Any]:
    """RunSpec.engine -> the keyword arguments of VLLMBackend(model, **kwargs)."""
    return {(_ENGINE[k].to or k): (_ENGINE[k].value if _ENGINE[k].type is None else v)
            for k, v in options.items()}


def backend_namespace(options: dict[str, Any], *, model: str | None) -> argparse.Namespace:
    """RunSpec.backend_options as the namespace a backend's `from_cli` reads."""
    ns = {o.name: BACKEND_DEFAULTS.get(o.name) for o in BACKEND_OPTIONS}
    ns.update({k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in options.items()})
    return argparse.Namespace(model=model, **ns)
