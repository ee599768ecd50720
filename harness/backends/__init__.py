"""Backends: one batch method, generate(requests) -> completions (same order), plus the declared
lifecycle of `base.BackendBase`.

BACKENDS is the one table from a backend's name (`harness run --backend NAME`) to its class,
imported only when chosen (vLLM, openai and langchain are optional extras). Adding a backend is one
entry here plus its class (see docs/extending.md).
"""
from __future__ import annotations

import importlib

from ..errors import ConfigError, suggest
from .base import Backend, BackendBase, stats_delta

BACKENDS: dict[str, str] = {
    "vllm": "harness.backends.vllm:VLLMBackend",
    "openai": "harness.backends.openai:OpenAIBackend",
    "langchain": "harness.backends.langchain:LangChainBackend",
    "ray": "harness.backends.ray:RayBackend",
}


def backend_class(name: str) -> type[BackendBase]:
    """The class registered under `name` in BACKENDS."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}'", field="--backend", fix=suggest(name, BACKENDS))
    module, _, attr = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["BACKENDS", "Backend", "BackendBase", "backend_class", "stats_delta"]
