"""The public surface: `harness.__all__` is pinned, so a change to it is a decision, not an accident."""
from __future__ import annotations

import harness
import harness.backends

PUBLIC = ["run", "run_spec", "optimize", "RunSpec", "load_experiment", "report", "compare", "tasks", "models", "load_task", "load_run", "parse_strategy", "HarnessError", "ConfigError", "BackendError",
          "Example", "Request", "Completion", "Prediction", "Message", "Sampling", "OutputType"]
BACKENDS_PUBLIC = ["BACKENDS", "Backend", "BackendBase", "backend_class", "stats_delta"]


def test_harness_all_is_pinned():
    assert sorted(harness.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves():
    for name in PUBLIC:
        assert getattr(harness, name) is not None, name
    for name in BACKENDS_PUBLIC:
        assert getattr(harness.backends, name) is not None, name


def test_backends_all_is_pinned():
    assert sorted(harness.backends.__all__) == sorted(BACKENDS_PUBLIC)


def test_former_import_paths_still_work():
    """Names that moved when modules were split stay importable from their former module."""
    from harness.backends.openai import (MAX_RETRY_AFTER_S, RETRY_STATUS, backoff_s, classify,  # noqa: F401
                                         constraint_kwargs, normalize_base_url, plain_prompt, retry_after_s,
                                         run_sync, to_chat_kwargs, to_completion_kwargs)
    from harness.backends.vllm import constraint_for, to_chat_messages, to_sampling_params  # noqa: F401
    from harness.backends.guided import structured_outputs

    assert constraint_for is structured_outputs
    assert run_sync is harness.backends.chat.run_sync


def test_one_name_per_module():
    """No import hook and no module-level __getattr__ makes a module importable under a second name
    (issue 21): the flat layout's names (harness.strategies, harness.scorers, ...) are gone."""
    import importlib

    import pytest

    for old in ("harness.strategies", "harness.scorers", "harness.runner", "harness.stats_old", "harness._aliases"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
    for path in (harness.__file__,):
        text = open(path, encoding="utf-8").read()
        assert "_aliases" not in text
    import pathlib
    root = pathlib.Path(harness.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py") if "def __getattr__" in p.read_text(encoding="utf-8")
                 or "_aliases" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_no_noqa_reexport_of_a_private_name():
    import pathlib
    import re

    root = pathlib.Path(harness.__file__).parent
    bad = []
    for p in root.rglob("*.py"):
        for line in p.read_text(encoding="utf-8").splitlines():
            if "noqa: F401" in line and re.search(r"import .*\b_[A-Za-z]", line):
                bad.append(f"{p}: {line.strip()}")
    assert bad == []
