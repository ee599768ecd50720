"""The public surface: `harness.__all__` is pinned, so a change to it is a decision, not an accident."""
from __future__ import annotations

import harness
import harness.backends

PUBLIC = ["run", "load_task", "load_run", "parse_strategy", "HarnessError", "ConfigError", "BackendError",
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
    from harness.runner import RESULTS_DIR, build_units, finalize, make_row, stats_delta  # noqa: F401
    from harness.tasks import DATA_SUFFIXES, load_rows, parse_task_file  # noqa: F401
    from harness.report import fnum, fp, pct, verdicts, write_compare, write_report  # noqa: F401
    from harness.guided import structured_outputs

    assert constraint_for is structured_outputs
    assert run_sync is harness.backends.chat.run_sync
