"""The one progress bar a run shows, on stderr: units done of total, requests per second and the time left.

    units 150/550 |██▋       | 01:10 elapsed, 03:07 left, 150 of 610 requests, 6.4 req/s

A unit is one (task, strategy, example); its requests are what the engine answers (self-consistency's
k samples are one request with n = k). The bar moves a chunk at a time, as the runner journals it; the
rate and the time left are over the whole run so far (no smoothing), so they settle as chunks finish.
On a terminal the clock keeps ticking between chunks, so a long engine call does not look like a hang.
The engine's own bars are off (Backend.quiet) unless --verbose (harness/backends/engine_log.py).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

BAR_FORMAT = "{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed} elapsed, {remaining} left{postfix}"  # tqdm: ", " + postfix
TICK_S = 1.0  # how often a bar on a terminal redraws its clock between chunks


class Progress:
    """`update(units, requests)` after each journaled chunk; `close()` at the end (idempotent).
    `enabled=False` (--quiet, progress=False) or nothing to do: no bar at all."""

    def __init__(self, units: int, requests: int, *, enabled: bool = True, file: TextIO | None = None) -> None:
        self.bar = None
        self.t0 = time.perf_counter()
        self.requests, self.total_requests = 0, requests
        self._lock, self._stop, self._ticker = threading.Lock(), threading.Event(), None
        if not (enabled and units):
            return
        from tqdm.auto import tqdm

        out = file or sys.stderr
        self.bar = tqdm(total=units, desc="units", unit="unit", file=out, dynamic_ncols=True, smoothing=0,
                        mininterval=0.2, bar_format=BAR_FORMAT)
        self.bar.set_postfix_str(f"0 of {requests} requests, – req/s")
        if _isatty(out):
            self._ticker = threading.Thread(target=self._tick, name="progress-clock", daemon=True)
            self._ticker.start()

    def update(self, units: int, requests: int) -> None:
        with self._lock:
            self.requests += requests
            if self.bar is None:
                return
            rate = self.requests / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix_str(f"{self.requests} of {self.total_requests} requests, {rate:.1f} req/s",
                                     refresh=False)
            self.bar.update(units)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                if self.bar is None or self.bar.disable:
                    return
                self.bar.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(2 * TICK_S)
        with self._lock:
            if self.bar is not None:
                self.bar.close()


def _isatty(f: TextIO) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError):
        return False
