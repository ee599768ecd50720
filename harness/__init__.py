"""harness: which prompting strategy, on which model, at what token cost and latency, is best,
and is the difference real?

    import harness
    df = harness.run(tasks=["coin_flip"], strategies=["zero_shot", "cot"], limit=20, report=True)

`__all__` is the public surface (pinned by tests/test_public_names.py); docs/extending.md shows where
to add a task, a template, a strategy, a backend, a scorer and a report section.
"""
from .api import compare, models, optimize, report, run, run_spec, tasks
from .errors import BackendError, ConfigError, HarnessError
from .records import Completion, Example, Message, OutputType, Prediction, Request, Sampling
from .runs.experiment import load_experiment
from .runs.results import load_run
from .runs.spec import RunSpec
from .strategy.strategies import parse_strategy
from .task.tasks import load_task

__all__ = ["run", "run_spec", "optimize", "RunSpec", "load_experiment", "report", "compare", "tasks", "models", "load_task", "load_run", "parse_strategy", "HarnessError", "ConfigError", "BackendError",
           "Example", "Request", "Completion", "Prediction", "Message", "Sampling", "OutputType"]
__version__ = "0.1.0"
