"""The run's one progress bar, on stderr: units done / total, requests per second and the time left.

    run  27%|██▋       | 150/550 units [01:10<03:07, 6.4 req/s]

A unit is one (task, strategy, example); its requests are what the engine answers (self-consistency's
k samples are one request with n = k). The bar moves a chunk at a time, as the runner journals it; the
rate and the time left are over the whole run so far (no smoothing), so they settle as chunks finish.
On a terminal the clock keeps ticking between chunks, so a long engine call does not look like a hang.
The engine's own bars are off (harness/backends/engine_log.py: --verbose turns them on).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} units [{elapsed}<{remaining}{postfix}]"
TICK_S = 1.0  # how often the clock of a bar on a terminal is redrawn between chunks


class Progress:
    """`update(units, requests)` after each journaled chunk; `close()` at the end (idempotent)."""

    def __init__(self, total_units: int, *, file: TextIO | None = None, desc: str = "run") -> None:
        from tqdm.auto import tqdm

        self.file = file or sys.stderr
        self.requests = 0
        self._t0 = time.perf_counter()
        self._bar = tqdm(total=total_units, desc=desc, unit="unit", file=self.file, bar_format=BAR_FORMAT,
                         smoothing=0, dynamic_ncols=True, mininterval=0.2)
        self._bar.set_postfix_str(", – req/s", refresh=False)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = None
        if _isatty(self.file):
            self._ticker = threading.Thread(target=self._tick, name="progress-clock", daemon=True)
            self._ticker.start()

    def update(self, units: int, requests: int) -> None:
        with self._lock:
            self.requests += requests
            elapsed = time.perf_counter() - self._t0
            if elapsed > 0:
                self._bar.set_postfix_str(f", {self.requests / elapsed:.1f} req/s", refresh=False)
            self._bar.update(units)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                if self._bar.disable:
                    return
                self._bar.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(2 * TICK_S)
        with self._lock:
            self._bar.close()


def progress(total_units: int, enabled: bool) -> Progress | None:
    """The bar, or None when turned off (--quiet, progress=False) or there is nothing to do."""
    return Progress(total_units) if enabled and total_units > 0 else None


def _isatty(f: TextIO) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError):
        return False
