"""Nothing the harness starts listens beyond this machine by default, and a keyed server wants its key
(issue 29, docs/security.md).

Each listener the harness starts today is started for real, and the sockets of its own processes (by
inode, tests/listeners.py) are read from /proc/net: the offline engine (the session's `engine`), `harness
view`, and `harness serve` on its default host. The server is started once, through the CLI, with
`--api-key-env`: it refuses requests without the key (401) and answers with it (200), and the key it
was given is searched for in `ps`, the processes' command lines, the server log, the CLI's output and a
run folder written through it: it must be nowhere. One server start for the module.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from listeners import listeners, local_addresses
from proctree import tree

VAR = "HARNESS_TEST_SERVE_KEY"


def _nonlocal(found) -> list:
    return [l for l in found if not l.loopback]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = open(f"/proc/{pid}/environ", "rb").read()
    except OSError:
        return {}
    return dict(kv.decode(errors="replace").split("=", 1) for kv in raw.split(b"\0") if b"=" in kv)


def _engine_workers(pids) -> list[int]:
    """The vLLM engine processes among `pids` (they name themselves VLLM::EngineCore, VLLM::Worker)."""
    out = []
    for pid in pids:
        try:
            if open(f"/proc/{pid}/comm").read().startswith("VLLM::"):
                out.append(pid)
        except OSError:
            pass
    return out


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    """`harness serve --api-key-env VAR` (default host) in a subprocess, with a random key planted in VAR.
    Yields (url, key, cli process, log path); stops it with Ctrl-C at the end."""
    key = f"sk-serve-PLANTED-{secrets.token_hex(16)}"
    err_path = tmp_path_factory.mktemp("serve") / "serve.stderr"
    env = {**os.environ, VAR: key}
    env.pop("VLLM_API_KEY", None)
    with open(err_path, "w") as err:
        cli = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", "--api-key-env", VAR,
                                "--kv-cache-gib", "1", "--timeout", "300"],
                               stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        url = cli.stdout.readline().strip()  # printed once /health answered; the log line follows on stderr
        deadline = time.monotonic() + 30
        while "serving" not in (stderr := err_path.read_text()) and time.monotonic() < deadline and url:
            time.sleep(0.1)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), stderr[-3000:]
        m = re.search(r"log (\S+server\.log)", stderr)
        assert m and f"${VAR}" in stderr, stderr[-2000:]
        yield url, key, cli, m.group(1), err_path
    finally:
        if cli.poll() is None:
            cli.send_signal(signal.SIGINT)
            cli.wait(timeout=60)


def _request(url: str, *, key: str | None, body: dict | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"text": raw.decode(errors="replace")}


@pytest.mark.server
def test_keyed_server_refuses_requests_without_the_key(keyed_server):
    url, key, *_ = keyed_server
    status, models = _request(f"{url}/models", key=key)
    assert status == 200 and models["data"], models
    body = {"model": models["data"][0]["id"], "prompt": "The sky is", "max_tokens": 4, "temperature": 0}
    assert _request(f"{url}/models", key=None)[0] == 401
    assert _request(f"{url}/completions", key=None, body=body)[0] == 401
    assert _request(f"{url}/completions", key="sk-wrong-" + key[-8:], body=body)[0] == 401
    status, out = _request(f"{url}/completions", key=key, body=body)
    assert status == 200 and out["choices"][0]["text"], out
    # vLLM's own check covers /v1 only; /invocations runs the same completion, the others tell about the
    # server: without the key each is refused too (harness/backends/serve_auth.py), /health alone is open
    root = url[: -len("/v1")]
    for path, payload in [("/invocations", body), ("/tokenize", {"model": body["model"], "prompt": "hi"}),
                          ("/metrics", None), ("/version", None), ("/openapi.json", None)]:
        assert _request(root + path, key=None, body=payload)[0] == 401, path
    status, out = _request(f"{root}/invocations", key=key, body=body)
    assert status == 200 and out["choices"][0]["text"], out
    with urllib.request.urlopen(f"{root}/health", timeout=10) as r:
        assert r.status == 200


@pytest.mark.server
def test_openai_backend_sends_the_key_and_the_key_is_written_nowhere(keyed_server, tmp_path, monkeypatch):
    """The OpenAI backend without the key is refused up front; with --api-key-env it runs. Then the key is
    searched for in `ps`, the server's processes' command lines, the server log and the run folder."""
    import harness
    from harness.backends.openai import OpenAIBackend
    from harness.errors import EngineStartError

    url, key, cli, log_path, _ = keyed_server
    with pytest.raises(EngineStartError, match="refused the API key"):
        OpenAIBackend(url)
    monkeypatch.setenv(VAR, key)
    backend = OpenAIBackend(url, api_key_env=VAR, concurrency=2)
    out = tmp_path / "run"
    df = harness.run(["coin_flip"], ["zero_shot"], backend=backend, limit=2, out=out, progress=False,
                     write_report=True, cache=False)
    assert len(df) == 2 and df["error"].isna().all(), df.get("error")
    assert json.loads((out / "run.json").read_text())["engine"]["api_key_env"] == VAR

    procs = tree(cli.pid)
    server_pid = next(p for p in procs if b"vllm.entrypoints.openai.api_server" in open(f"/proc/{p}/cmdline", "rb").read())
    assert _environ(server_pid).get("VLLM_API_KEY") == key  # delivered through the environment ...
    ps = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True, check=True).stdout
    assert str(server_pid) in ps
    needles = [key, key.split("PLANTED-")[1]]
    places = {"ps": ps, "server.log": open(log_path, errors="replace").read()}  # ... and nowhere else
    places.update({f"/proc/{p}/cmdline": open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
                   for p in procs})
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert {"run.json", "predictions.parquet", "report.html", "report.md"} <= {p.name for p in files}
    places.update({str(p): p.read_bytes().decode("latin-1") for p in files})
    print(f"\nsearched {len(places)} places for the planted key")
    assert [name for name, text in places.items() if any(n in text for n in needles)] == []


@pytest.mark.server
def test_serve_on_its_default_host_listens_on_loopback_only(keyed_server):
    url, key, cli, _, err_path = keyed_server
    procs = tree(cli.pid)
    found = listeners(procs)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    print("\nserve listeners:", sorted({(l.proto, l.address, l.port) for l in found}))
    assert any(l.proto == "tcp" and l.address == "127.0.0.1" and l.port == port for l in found), found
    assert _nonlocal(found) == []
    assert _engine_workers(procs), procs  # the engine core and its worker are among them
    # the engine processes inherit the server's environment (their own /proc/PID/environ is overwritten
    # when vLLM renames them, so the server process is where it can be read)
    server_pid = next(p for p in procs if b"vllm.entrypoints.openai.api_server" in open(f"/proc/{p}/cmdline", "rb").read())
    assert _environ(server_pid).get("GLOO_SOCKET_IFNAME") == "lo"
    cli.send_signal(signal.SIGINT)  # the end of the module's server: its output must not hold the key either
    assert cli.wait(timeout=60) == 0
    outputs = cli.stdout.read() + err_path.read_text()
    assert key not in outputs and key.split("PLANTED-")[1] not in outputs


@pytest.mark.engine
def test_offline_engine_listens_on_loopback_only(engine):
    """The session's engine: its processes (this one and the engine core and worker it started) listen on
    loopback only. The worker's gloo group does listen (a dozen ports), so the check has something to see."""
    engine.llm  # noqa: B018 - started
    procs = tree(os.getpid())
    found = listeners(procs)
    workers = _engine_workers(procs)
    print("\nengine listeners:", sorted({(l.proto, l.address, l.port) for l in found}))
    assert workers and any(l.pid in workers and l.proto.startswith("tcp") for l in found), found
    assert _nonlocal(found) == []


@pytest.mark.engine
def test_warm_engine_listens_on_a_private_unix_socket_only(warm_engine):
    """`harness engine start`'s daemon and its engine: no TCP or UDP socket on a non-loopback address; its
    own socket is a Unix socket of mode 0600 in a 0700 folder, and the token file is 0600 (docs/security.md)."""
    import stat

    rt, state = warm_engine
    procs = tree(int(state["pid"]))
    found = listeners(procs)
    print("\nwarm engine listeners:", sorted({(l.proto, l.address, l.port) for l in found}))
    assert _engine_workers(procs), procs  # the engine runs under the daemon
    assert _nonlocal(found) == []
    assert not [l for l in found if l.pid == int(state["pid"])]  # the daemon itself has no TCP/UDP socket
    sock = rt / "engine.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(rt.stat().st_mode) == 0o700 and stat.S_IMODE((rt / "engine.token").stat().st_mode) == 0o600


def test_view_listens_on_loopback_only(tmp_path):
    from harness.reports.view import start_in_thread

    srv, url = start_in_thread(tmp_path)
    try:
        found = listeners([os.getpid()])
        port = srv.server_address[1]
        assert any(l.address == "127.0.0.1" and l.port == port for l in found), found
        assert _nonlocal(found) == []
    finally:
        srv.shutdown()
        srv.server_close()


GLOO_SCRIPT = textwrap.dedent('''
    import json, os, sys, tempfile
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[1])
    from listeners import listeners
    from harness.system.sockets import keep_engine_sockets_local

    def bound():
        dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
        found = [(l.address, l.loopback) for l in listeners([os.getpid()])]
        dist.destroy_process_group()
        return found

    os.environ.pop("GLOO_SOCKET_IFNAME", None)
    before = bound()
    keep_engine_sockets_local(os.environ)
    print(json.dumps({"before": before, "after": bound(), "var": os.environ.get("GLOO_SOCKET_IFNAME")}))
''')


def _can_unshare() -> bool:
    return (os.geteuid() == 0 and shutil.which("unshare") is not None and bool(local_addresses())
            and subprocess.run(["unshare", "--uts", "--mount", "true"], capture_output=True).returncode == 0)


@pytest.mark.skipif(not _can_unshare(), reason="needs root, unshare and a non-loopback address")
def test_engine_sockets_stay_local_where_the_hostname_resolves_to_the_network(tmp_path):
    """Where the machine's name resolves to its network address (common; here it resolves to 127.0.0.1),
    torch's gloo group, which every vLLM worker opens, listens on that address. In a private UTS and mount
    namespace with such a name, a gloo group listens on the network address, and after
    keep_engine_sockets_local on loopback only."""
    addr = local_addresses()[0]
    (tmp_path / "hosts").write_text(f"127.0.0.1 localhost\n{addr} harness-lan-test\n")
    (tmp_path / "gloo.py").write_text(GLOO_SCRIPT)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    inner = (f"mount --bind {tmp_path / 'hosts'} /etc/hosts && hostname harness-lan-test && "
             f"exec {sys.executable} {tmp_path / 'gloo.py'} {tests_dir}")
    proc = subprocess.run(["unshare", "--uts", "--mount", "sh", "-c", inner], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\ngloo without / with the loopback interface:", got)
    assert got["before"] and any(a == addr and not lo for a, lo in got["before"])
    assert got["var"] == "lo" and got["after"] and all(lo for _, lo in got["after"])
