"""Templates from other people run in Jinja's sandbox; paths cannot escape their folders."""
from __future__ import annotations

import os
import shutil

import pytest

from harness.errors import ConfigError, TemplateError
from harness.runs.results import check_run_id
from harness.task.templates import load_template

PAYLOADS = [
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('id').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ question.__class__.__init__.__globals__ }}",
    "{{ question|attr('__class__') }}",
    "{{ range(10**9)|list }}",
    "{{ config.items() }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_escape_payloads_are_refused_with_a_clear_error(tmp_path, payload):
    (tmp_path / "evil.j2").write_text("{% block input %}" + payload + "{% endblock %}")
    tpl = load_template("evil.j2", [tmp_path])
    with pytest.raises(TemplateError) as info:
        tpl.render({"question": "q"})
    line = info.value.one_line()
    assert "\n" not in line and str(tmp_path / "evil.j2") in line
    assert "uid=" not in line


def test_symlinked_template_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.j2").write_text("{% block input %}secret{% endblock %}")
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    os.symlink(outside / "secret.j2", prompts / "link.j2")
    with pytest.raises(TemplateError, match="symbolic link"):
        load_template("link.j2", [prompts])
    (prompts / "inc.j2").write_text('{% block input %}{% include "link.j2" %}{% endblock %}')
    with pytest.raises(TemplateError, match="symbolic link"):
        load_template("inc.j2", [prompts]).render({})


@pytest.mark.parametrize("name", ["../x.j2", "/etc/passwd", "a/../../x.j2"])
def test_template_names_cannot_leave_the_folder(tmp_path, name):
    with pytest.raises(TemplateError):
        load_template(name, [tmp_path])


@pytest.mark.parametrize("run_id", ["../x", "/abs", "a/b", "..", ".hidden", ""])
def test_run_ids_cannot_escape(run_id):
    with pytest.raises(ConfigError):
        check_run_id(run_id)


def test_task_names_cannot_escape():
    from harness.task.tasks import load_task

    with pytest.raises(ConfigError):
        load_task("..%2Fevil")
    with pytest.raises(ConfigError):
        load_task("../../etc/passwd.yaml")


# ---- harness serve: who may listen where (issue 29, docs/security.md; the real server: tests/test_listeners.py)

@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                           ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                           ("", False), ("192.0.2.7", False), ("example.org", False)])
def test_loopback_hosts(host, loopback):
    from harness.backends.serve import is_loopback

    assert is_loopback(host) is loopback


def test_a_remote_serve_needs_a_key(monkeypatch):
    from harness.backends.serve import server_key

    monkeypatch.setenv("HARNESS_TEST_KEY", "k-123")
    monkeypatch.delenv("HARNESS_TEST_UNSET", raising=False)
    assert server_key("127.0.0.1", api_key_env=None) is None
    assert server_key("0.0.0.0", api_key_env="HARNESS_TEST_KEY") == "k-123"
    assert server_key("127.0.0.1", api_key_env="HARNESS_TEST_KEY") == "k-123"  # a key on loopback is fine too
    assert server_key("0.0.0.0", api_key_env=None, allow_remote_without_key=True) is None
    for host, kw, words in [("0.0.0.0", {}, ["--host", "--api-key-env", "--allow-remote-without-key"]),
                            ("10.1.2.3", {}, ["10.1.2.3", "--api-key-env"]),
                            ("0.0.0.0", {"api_key_env": "HARNESS_TEST_UNSET"}, ["HARNESS_TEST_UNSET", "export"]),
                            ("127.0.0.1", {"extra_args": ["--api-key", "k-123"]}, ["ps", "--api-key-env"]),
                            ("127.0.0.1", {"extra_args": ["--api-key=k-123"]}, ["ps", "--api-key-env"])]:
        with pytest.raises(ConfigError) as info:
            server_key(host, **{"api_key_env": None, **kw})
        line = info.value.one_line()
        assert "\n" not in line and all(w in line for w in words), line
        assert "k-123" not in line


def _cli(*args: str, env: dict | None = None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_cli_serve_on_every_interface_without_a_key_exits_2():
    proc = _cli("serve", "--host", "0.0.0.0")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert "--api-key-env" in proc.stderr and "refusing to serve on 0.0.0.0" in proc.stderr
    proc = _cli("serve", "--host", "0.0.0.0", "--api-key-env", "HARNESS_TEST_UNSET_KEY", env={})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "HARNESS_TEST_UNSET_KEY" in proc.stderr


def test_serving_everywhere_without_a_key_warns(tmp_path, capsys):
    """--allow-remote-without-key starts the server, with a warning. A model folder vLLM cannot load
    keeps it short: the process is stopped as soon as it has started."""
    from harness.backends.serve import serve

    bad = tmp_path / "bad-model"
    bad.mkdir()
    (bad / "config.json").write_text('{"architectures": ["NoSuchArchForCausalLM"], "model_type": "nosuchtype"}')
    handle = serve(str(bad), host="0.0.0.0", allow_remote_without_key=True, wait=False)
    try:
        assert handle.api_key_env is None and handle.url.startswith("http://127.0.0.1:")
    finally:
        handle.stop()
        shutil.rmtree(handle.log_path.parent, ignore_errors=True)
    err = capsys.readouterr().err
    assert "WARNING" in err and "0.0.0.0" in err and "no API key" in err


def test_engine_sockets_are_kept_local_unless_told_otherwise():
    from harness.system.sockets import keep_engine_sockets_local

    env: dict[str, str] = {}
    keep_engine_sockets_local(env)
    assert env == {"GLOO_SOCKET_IFNAME": "lo"}
    env = {"GLOO_SOCKET_IFNAME": "eth1"}
    keep_engine_sockets_local(env)
    assert env == {"GLOO_SOCKET_IFNAME": "eth1"}  # the user's choice stands
    env = {}
    keep_engine_sockets_local(env, ray=True)
    assert env == {}  # Ray workers may be on other machines


def test_the_servers_key_check_covers_every_path_but_health(monkeypatch):
    """serve_auth.RequireKey, driven as an ASGI app: the inner app is reached only with the right bearer
    token, on any path (vLLM's own check skips /invocations, /tokenize, /metrics ...), or on /health."""
    import asyncio

    from harness.backends.serve_auth import RequireKey

    monkeypatch.setenv("VLLM_API_KEY", "k-right")
    reached: list[str] = []

    async def inner(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    app = RequireKey(inner)

    def call(path: str, auth: bytes | None = None, method: str = "POST", kind: str = "http") -> int:
        sent: list[dict] = []

        async def send(msg):
            sent.append(msg)

        headers = [(b"content-type", b"application/json")] + ([(b"Authorization", auth)] if auth else [])
        scope = {"type": kind, "path": path, "method": method, "headers": headers}
        asyncio.run(app(scope, None, send))
        return sent[0].get("status", sent[0].get("code"))

    for path in ["/v1/completions", "/invocations", "/tokenize", "/metrics", "/generative_scoring", "/", "/healthz"]:
        assert call(path) == 401
        assert call(path, b"Bearer k-wrong") == 401
        assert call(path, b"Basic k-right") == 401
        assert call(path, b"Bearer k-right") == 200
    assert call("/health", method="GET") == 200 and call("/v1/models", method="OPTIONS") == 200
    assert call("/v1/realtime", kind="websocket") == 1008
    assert reached == ["/v1/completions", "/invocations", "/tokenize", "/metrics", "/generative_scoring", "/",
                       "/healthz", "/health", "/v1/models"]
    monkeypatch.delenv("VLLM_API_KEY")
    with pytest.raises(RuntimeError, match="VLLM_API_KEY"):
        RequireKey(inner)  # a keyed server with no key must not start open


def test_vllms_own_key_check_skips_paths_that_run_the_model():
    """Why serve_auth exists: vLLM 0.32's AuthenticationMiddleware (what --api-key / VLLM_API_KEY turn on)
    lets /invocations, which runs chat and completion requests, through without a key. If a later vLLM
    guards it, this fails and docs/security.md can say so."""
    import asyncio
    import importlib.util
    from pathlib import Path

    # the file alone (it imports starlette only): importing the vllm package takes seconds
    path = Path(importlib.util.find_spec("vllm").origin).parent / "entrypoints/serve/middleware/authenticate.py"
    spec = importlib.util.spec_from_file_location("vllm_authenticate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    AuthenticationMiddleware = module.AuthenticationMiddleware
    reached: list[str] = []

    async def inner(scope, receive, send):
        reached.append(scope["path"])

    async def send(msg):
        pass

    app = AuthenticationMiddleware(inner, tokens=["k-right"])
    for path in ["/v1/completions", "/invocations", "/tokenize", "/metrics"]:
        asyncio.run(app({"type": "http", "path": path, "method": "POST", "headers": []}, None, send))
    assert reached == ["/invocations", "/tokenize", "/metrics"]
