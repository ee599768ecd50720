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
    from harness.runs.runner import RESULTS_DIR, build_units, finalize, make_row, stats_delta  # noqa: F401
    from harness.task.tasks import DATA_SUFFIXES, load_rows, parse_task_file  # noqa: F401
    from harness.report.report import fnum, fp, pct, verdicts, write_compare, write_report  # noqa: F401
    from harness.backends.guided import structured_outputs

    assert constraint_for is structured_outputs
    assert run_sync is harness.backends.chat.run_sync


def test_the_flat_layouts_module_names_still_import():
    """After the regroup into stage folders (issue 10) every old module name imports the moved module
    itself (one object, not a second copy), and the two old modules that became folders forward
    their names."""
    import importlib

    from harness._aliases import MOVED

    assert len(MOVED) == 42  # 45 flat modules moved; report and scoring became the folders; harness.stats is a package now
    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    assert importlib.import_module("harness.generators.arithmetic") is \
        importlib.import_module("harness.task.generators.arithmetic")
    from harness.report import Section, write_report  # noqa: F401  (the flat harness.report)
    from harness.report.report import write_report as moved
    from harness.scoring import score  # noqa: F401  (the flat harness.scoring)
    from harness.strategies import FewShot
    from harness.strategy.strategies import FewShot as moved_cls

    assert write_report is moved and FewShot is moved_cls
    try:
        from harness.report import no_such_name  # noqa: F401
    except ImportError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown name imported")
