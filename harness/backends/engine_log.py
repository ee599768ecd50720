"""What the vLLM engine prints, and what of it reaches the terminal (docs/engine.md, "What the engine prints").

The engine warns about the harness's own defaults (chunked prefill off, eager mode,
tcmalloc preloaded and Intel OpenMP not, the CPU build without Triton) in
21 lines before the first result; none of them is something a user can act on. docs/engine.md explains
each once, and NOISE drops exactly those lines: a pattern per message, never a level or a logger. Every
other line, every error and traceback included, reaches the terminal as before. A backend that is not
quiet() (the CLI's --verbose) drops nothing and shows vLLM's INFO logs and progress bars.

Where the lines come from, and where they are dropped:
- this process (vLLM's loggers, before and after vLLM configures logging; PyTorch's Python warnings):
  `install_filters()` adds a logging.Filter to the loggers NOISE names and a warnings filter;
- the engine core and worker processes, which vLLM spawns with this process's stderr (their vLLM logs,
  PyTorch's C++ warnings, Python warnings printed at import): `filtered_stderr()` gives them a pipe as
  stderr while the engine starts, and a thread copies its lines to the terminal without the NOISE lines.
  This process keeps writing to the terminal directly (sys.stderr is rebound for that moment).
"""
from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple


class Noise(NamedTuple):
    logger: str  # the vLLM logger that says it in this process ("" where it is not a vLLM log record)
    pattern: str  # a regular expression searched in the message (and in each line the engine prints)
    why: str  # the harness default that causes it (docs/engine.md, "What the engine prints")


NOISE: tuple[Noise, ...] = (
    Noise("vllm.engine.arg_utils", r"does not officially support disabling chunked prefill\. Disabling this "
          r"manually may cause the engine to crash", "chunked prefill off: seeded sampling on CPU needs it"),
    Noise("vllm.config.vllm", r"^Enforce eager set, disabling torch\.compile", "eager mode (enforce_eager=True)"),
    Noise("vllm.config.vllm", r"^Inductor compilation was disabled by user settings", "eager mode"),
    Noise("vllm.triton_utils.importing", r"^Triton is installed, but doesn't include CPU backend\. Disabling Triton\.",
          "the CPU build runs without Triton"),
    Noise("vllm.platforms.cpu", r"^Triton is not installed\. triton-cpu is expected on x86 CPUs\.",
          "the CPU build runs without Triton"),
    Noise("vllm.config.vllm", r"^Model Runner V2 requires Triton; using the V1 model runner instead\.",
          "the CPU build runs without Triton"),
    Noise("vllm.v1.worker.cpu_worker", r"^lib(tcmalloc|iomp) is not found in LD_PRELOAD\. For best performance",
          "tcmalloc is preloaded where installed, Intel OpenMP never (measured: no gain)"),
    Noise("", r"utils\.cpp:\d+\] Warning: NUMA binding: Using MEMBIND policy for memory allocation",
          "vLLM's default CPU thread binding (kept: other bindings were 2-20x slower)"),
    Noise("", r"FutureWarning: `torch\.distributed\.reduce_op` is deprecated", "PyTorch, read by vLLM at import"),
)
# a Python warning printed by another process is two lines: "file:line: Category: message" and the source line
_SOURCE_LINE = re.compile(r"^\s{2}\S")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PATTERNS = [re.compile(n.pattern) for n in NOISE]
# Python warnings of this process that NOISE names: (start of the message, category). The engine processes
# print theirs to the pipe, where NOISE drops them.
WARNINGS = (("`torch.distributed.reduce_op` is deprecated", FutureWarning),)


def is_noise(line: str) -> bool:
    """True for a line of the engine's output that NOISE names.

    >>> is_noise("(EngineCore pid=7) WARNING 12-05 00:05:12 [vllm.py:1703] Enforce eager set, disabling torch.compile")
    True
    >>> is_noise("(EngineCore pid=7) ERROR 12-05 00:05:12 [core.py:1] EngineCore failed to start.")
    False
    """
    text = _ANSI.sub("", line)
    text = re.sub(r"^\([^)]*pid=\d+\) \w+ [\d-]+ [\d:]+ \[[^\]]*\] ", "", text)  # vLLM's prefix
    return any(p.search(text) for p in _PATTERNS)


class _Drop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a record that cannot format itself is not ours to judge
            return True
        return not any(p.search(msg) for n, p in zip(NOISE, _PATTERNS) if n.logger == record.name)


_FILTER = _Drop()


def install_filters() -> None:
    """Drop NOISE from this process's vLLM loggers and Python warnings (idempotent). A filter on the logger
    that makes the record holds through vLLM's logging configuration (which replaces handlers only)."""
    for name in {n.logger for n in NOISE if n.logger}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for message, category in WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category)


def configure(*, verbose: bool = False, quiet: bool = False) -> None:
    """The CLI's --verbose / --quiet for the engines this process starts: vLLM's log level, set before vllm
    is imported, in the environment its processes inherit. --quiet: vLLM's errors only; default: its
    warnings, less NOISE; --verbose: its INFO logs and every warning (the runner does not call the backend's
    quiet(), so its bars show and nothing is filtered)."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "ERROR" if quiet else "WARNING")
    if not verbose:
        install_filters()


class _Copier(threading.Thread):
    """Copies the engine processes' stderr (a pipe) to the terminal, line by line, without NOISE."""

    def __init__(self, read_fd: int, out_fd: int) -> None:
        super().__init__(name="engine-stderr", daemon=True)
        self.read_fd, self.out_fd = read_fd, out_fd
        self.dropped = 0  # lines dropped (a test reads it)
        self._after_noise = False  # the previous line was dropped: a Python warning's source line goes too

    def run(self) -> None:
        pending = b""
        with io.FileIO(self.read_fd, "r", closefd=True) as pipe:
            while chunk := pipe.read(65536):
                *lines, pending = re.split(rb"(?<=[\n\r])", pending + chunk)
                self._copy(lines)
        if pending:
            self._copy([pending])

    def _copy(self, lines: list[bytes]) -> None:
        keep = []
        for raw in lines:
            text = raw.decode("utf-8", "replace")
            drop = is_noise(text) or (self._after_noise and bool(_SOURCE_LINE.match(text)))
            self._after_noise = drop and not _SOURCE_LINE.match(text)
            self.dropped += drop
            if not drop:
                keep.append(raw)
        if keep:
            try:
                os.write(self.out_fd, b"".join(keep))
            except OSError:  # the terminal is gone: nothing to show it on
                pass


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


@contextmanager
def filtered_stderr(enabled: bool = True) -> Iterator[threading.Thread | None]:
    """While the block runs (the engine's start), processes started inherit a pipe as their stderr, and
    this process's sys.stderr writes to the terminal directly. Yields the copying thread (join it after the
    engine has stopped, so that its last lines come before anything printed after it), or None when
    not `enabled` (the backend is not quiet: --verbose) or there is no stderr to filter."""
    if not enabled:
        yield None
        return
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    try:
        # Where fd 2 writes now. The duplicate stays open for the process's life (one descriptor per engine
        # start): vLLM's log handler, made in the block, may keep the stream over it.
        terminal = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to filter
        yield None
        return
    stream = io.TextIOWrapper(io.FileIO(terminal, "w", closefd=False), line_buffering=True, write_through=True,
                              encoding=getattr(sys.stderr, "encoding", None) or "utf-8", errors="backslashreplace")
    if os.isatty(terminal):  # the engine processes write to a pipe now: keep vLLM's colours on a terminal
        os.environ.setdefault("VLLM_LOGGING_COLOR", "1")
    read_fd, write_fd = os.pipe()
    saved, before = os.dup(2), sys.stderr
    os.dup2(write_fd, 2)
    os.close(write_fd)
    copier = _Copier(read_fd, terminal)
    copier.start()
    if _fileno(before) == 2:  # this process's own writes keep going to the terminal directly
        sys.stderr = stream
    try:
        yield copier
    finally:
        sys.stderr = before
        os.dup2(saved, 2)  # this process's fd 2 is the terminal again; only the engine processes hold the pipe
        os.close(saved)


SESSION_WRAPPER = Path(__file__).with_name("engine_session.sh")


@contextmanager
def own_session() -> Iterator[bool]:
    """While the block runs (the engine's start), multiprocessing spawns with engine_session.sh, which
    starts the engine core in a session of its own (its worker inherits it). A terminal's Ctrl-C then
    reaches the harness alone: the harness keeps what is done and stops the engine cleanly (close()),
    where the engine processes, signalled too, died in the middle of a step and printed two tracebacks
    ("RuntimeError: cancelled"). The watchdog (harness/runs/procs.py) still removes them whatever ends the
    harness. vLLM uses the same hook for its NUMA binding (vllm/utils/numa_utils.py) and composes with it.
    Yields False where the wrapper cannot run (no /bin/sh, not executable): the engine starts as before."""
    import multiprocessing.spawn

    if os.name != "posix" or not os.access(SESSION_WRAPPER, os.X_OK) or not os.path.exists("/bin/sh"):
        yield False
        return
    before_exe = multiprocessing.spawn.get_executable()
    before_env = os.environ.get("HARNESS_ENGINE_PYTHON")
    os.environ["HARNESS_ENGINE_PYTHON"] = os.fsdecode(before_exe)
    multiprocessing.spawn.set_executable(str(SESSION_WRAPPER))
    try:
        yield True
    finally:
        multiprocessing.spawn.set_executable(before_exe)
        if before_env is None:
            os.environ.pop("HARNESS_ENGINE_PYTHON", None)
        else:
            os.environ["HARNESS_ENGINE_PYTHON"] = before_env
