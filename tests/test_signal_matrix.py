"""A small part of the signal matrix (scripts/signal-matrix.py; the full matrix and its table are in
docs/faults.md), on the real engine and a real server: one case per command, each a different signal
and timing. Each case records the process tree, signals the harness alone, and asserts that nothing of
it is alive 10 s later, that the run folder is complete or resumes to exactly N rows, no duplicate, one
model name, and that a stopped server's port is free."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [pytest.mark.engine, pytest.mark.server]
ROOT = Path(__file__).resolve().parents[1]
LIMIT = 6  # 2 strategies x 6 examples = 12 units, 3 chunks of 4


def _matrix():
    spec = importlib.util.spec_from_file_location("signal_matrix", ROOT / "scripts" / "signal-matrix.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def matrix():
    return _matrix()


def _assert_ok(r: dict) -> None:
    assert r["hit"], f"the signal missed its moment: {r}"
    assert not r["alive_10s"], f"alive 10 s after SIG{r['signal']}: {r}"
    assert r["ok"], r


def test_serve_sigterm_during_start_frees_everything(matrix, tmp_path):
    r = matrix.run_case("serve", "TERM", "start", tmp=tmp_path, limit=LIMIT)
    _assert_ok(r)
    assert r["exit"] == 143 and r["rows"] == "port free"


def test_openai_run_sigkill_mid_run_resumes_to_n_rows(matrix, tmp_path):
    from harness.backends.serve import serve

    with serve(kv_cache_gib=1, timeout_s=300) as server:
        r = matrix.run_case("openai", "KILL", "mid", tmp=tmp_path, limit=LIMIT, url=server.url)
        assert server.alive()  # the server is not part of the run: a killed client leaves it serving
    _assert_ok(r)
    assert r["exit"] == -9 and r["after"] == "resumed" and r["rows"].startswith(f"{2 * LIMIT} rows, 0 dup")


def test_offline_run_sigterm_during_engine_start_exits_143_and_leaves_nothing(matrix, tmp_path):
    # Found by the full matrix: SIGTERM while vLLM's engine core loaded the model left `harness run` hung
    # (still waiting for the engine's ready message) and 4 processes alive, where SIGINT stopped it.
    r = matrix.run_case("offline", "TERM", "start", tmp=tmp_path, limit=LIMIT)
    _assert_ok(r)
    assert r["exit"] == 143 and r["status"] == "no run.json"
    assert r["rows"].startswith(f"{2 * LIMIT} rows, 0 dup")


def test_offline_run_sigint_during_finalize_is_complete_or_resumable(matrix, tmp_path):
    r = matrix.run_case("offline", "INT", "finalize", tmp=tmp_path, limit=LIMIT)
    _assert_ok(r)
    assert r["exit"] in (0, 130) and r["rows"].startswith(f"{2 * LIMIT} rows, 0 dup")
    assert r["rows"].endswith("['SmolLM2-135M-Instruct']")
