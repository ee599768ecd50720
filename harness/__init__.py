"""harness: which prompting strategy, on which model, at what token cost and latency, is best,
and is the difference real?

    import harness
    df = harness.run(tasks=["coin_flip"], strategies=["zero_shot", "cot"], limit=20, report=True)

`__all__` is the public surface (pinned by tests/test_public_names.py); docs/extending.md shows where
to add a task, a template, a strategy, a backend, a scorer and a report section.
"""
from . import _aliases
from .runs.api import run
from .errors import BackendError, ConfigError, HarnessError
from .records import Completion, Example, Message, OutputType, Prediction, Request, Sampling
from .runs.results import load_run
from .strategy.strategies import parse_strategy
from .task.tasks import load_task

__all__ = ["run", "load_task", "load_run", "parse_strategy", "HarnessError", "ConfigError", "BackendError",
           "Example", "Request", "Completion", "Prediction", "Message", "Sampling", "OutputType"]
__version__ = "0.1.0"
_aliases.install()  # the flat layout's module names still import (harness/_aliases.py)
