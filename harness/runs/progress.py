"""The one progress bar a run shows: units done of total, requests per second and the time left (tqdm, on
stderr). The engine's own bars are off (Backend.quiet) unless --verbose."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, units: int, requests: int, *, enabled: bool = True) -> None:
        self.bar = None
        self.t0 = time.perf_counter()
        self.requests = 0
        if enabled and units:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=units, desc="units", unit="unit", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {postfix} ETA {remaining}")
            self.bar.set_postfix_str(f"0 of {requests} requests")
        self.total_requests = requests

    def update(self, units: int, requests: int) -> None:
        self.requests += requests
        if self.bar is None:
            return
        rate = self.requests / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{self.requests} of {self.total_requests} requests, {rate:.1f} req/s", refresh=False)
        self.bar.update(units)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
