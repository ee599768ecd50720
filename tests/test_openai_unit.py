"""Fast tests of the server backends without an engine: the pure translation functions, the retry
policy against a scripted fault server on 127.0.0.1 (stdlib http.server in a thread), the shared
work queue over two endpoints, and the LangChain backend on langchain-core's fake chat model."""
from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.backends.openai import (OpenAIBackend, backoff_s, normalize_base_url, retry_after_s, to_chat_kwargs,
                                     to_completion_kwargs)
from harness.errors import ConfigError, EngineStartError
from harness.records import Message, OutputType, Request, Sampling

PERSON = json.dumps({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})


def req(key="k", text="Hi", **sampling) -> Request:
    return Request(key, (Message("system", "Be brief."), Message("user", text)), Sampling(**sampling))


# --------------------------------------------------------------------------- a scripted fault server

class FaultServer:
    """An OpenAI-shaped server. `script` is consumed one POST at a time: ("status", code, headers),
    "drop" (half a stream, then the connection closes) or "ok"; when it runs out every POST is "ok".
    "ok" answers with the request's last user message echoed back ("echo: ..."), streamed or not.
    `always` overrides the script for every POST; `delay_s` sleeps before answering."""

    def __init__(self, script=(), *, always=None, delay_s: float = 0.0) -> None:
        self.script, self.always, self.delay_s = list(script), always, delay_s
        self.hits: list[float] = []
        self.auth: list[str | None] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _json(self, code, obj, headers=()):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0,
                                                                  "owned_by": "me", "root": "/models/fake"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with outer.lock:
                    outer.hits.append(time.monotonic())
                    outer.auth.append(self.headers.get("Authorization"))
                    action = outer.always or (outer.script.pop(0) if outer.script else "ok")
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                if isinstance(action, tuple):
                    _, code, headers = action
                    self._json(code, {"error": {"message": f"scripted {code}", "type": "x", "code": code}}, headers)
                    return
                user = [m["content"] for m in body.get("messages", []) if m["role"] == "user"] or [body.get("prompt")]
                text = f"echo: {user[-1]}"
                if "BAD" in str(user[-1]):
                    self._json(400, {"error": {"message": "bad prompt", "type": "invalid_request_error"}})
                    return
                if body.get("stream"):
                    self._stream(text, body, drop=action == "drop")
                else:
                    self._json(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                                     "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                                                  "finish_reason": "stop"} for i in range(body.get("n", 1))],
                                     "usage": {"prompt_tokens": 5, "completion_tokens": 2 * body.get("n", 1),
                                               "total_tokens": 5 + 2 * body.get("n", 1)}})

            def _stream(self, text, body, *, drop):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                n = body.get("n", 1)
                head, _, tail = text.partition(" ")

                def chunk(choices, usage=None):
                    obj = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                           "choices": choices}
                    if usage:
                        obj["usage"] = usage
                    self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
                    self.wfile.flush()

                for i in range(n):
                    chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
                    chunk([{"index": i, "delta": {"content": head}, "finish_reason": None}])
                if drop:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                time.sleep(0.01)
                for i in range(n):
                    chunk([{"index": i, "delta": {"content": " " + tail}, "finish_reason": "stop"}])
                chunk([], {"prompt_tokens": 5, "completion_tokens": 2 * n, "total_tokens": 5 + 2 * n,
                           "prompt_tokens_details": {"cached_tokens": 3}})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FaultServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _backend(url, **kw) -> OpenAIBackend:
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("structured", "openai")
    return OpenAIBackend(url, **kw)


# --------------------------------------------------------------------------- retry policy

@pytest.mark.parametrize("stream", [True, False])
def test_429_then_500s_then_success(stream):
    script = [("status", 429, [("Retry-After", "1")]), ("status", 500, []), ("status", 500, [])]
    with FaultServer(script) as srv:
        backend = _backend(srv.url, stream=stream, max_retries=4)
        t0 = time.monotonic()
        [c] = backend.generate([req("q1", "hello there")])
        elapsed = time.monotonic() - t0
    assert c.error is None, c.error
    assert c.texts == ("echo: hello there",)
    assert len(srv.hits) == 4 and backend.last_attempts["q1"] == 4
    assert srv.hits[1] - srv.hits[0] >= 0.95  # Retry-After: 1 honoured
    assert elapsed < 5
    assert c.prompt_tokens == 5 and c.completion_tokens == (2,)
    assert 0 < c.latency_s <= elapsed
    if stream:
        assert c.ttft_s is not None and 0 < c.ttft_s <= c.latency_s
        assert c.cached_prompt_tokens == 3
        assert backend.last_itl["q1"] > 0
    else:
        assert c.ttft_s is None


def test_always_503_fails_after_max_retries_quickly():
    with FaultServer(always=("status", 503, [])) as srv:
        backend = _backend(srv.url, max_retries=3)
        t0 = time.monotonic()
        out = backend.generate([req("a"), req("b", "second")])
        elapsed = time.monotonic() - t0
    assert [c.texts for c in out] == [(), ()]
    for c in out:
        assert "HTTP 503" in c.error and "after 4 attempts" in c.error and srv.url in c.error
    assert len(srv.hits) == 8  # 2 requests x (1 + 3 retries)
    assert elapsed < 3  # backoff 0.01, 0.02, 0.04 s


def test_dropped_stream_is_retried():
    with FaultServer(["drop"]) as srv:
        backend = _backend(srv.url)
        [c] = backend.generate([req("d", "again")])
    assert c.error is None and c.texts == ("echo: again",)
    assert len(srv.hits) == 2 and backend.last_attempts["d"] == 2


def test_bad_request_fails_its_row_only_without_retry():
    with FaultServer() as srv:
        backend = _backend(srv.url)
        out = backend.generate([req("ok1", "one"), req("bad", "BAD one"), req("ok2", "two")])
    assert out[0].texts == ("echo: one",) and out[2].texts == ("echo: two",)
    assert out[1].error.startswith("HTTP 400: bad prompt")
    assert len(srv.hits) == 3


def test_choice_on_openai_api_fails_the_row_with_config_message():
    with FaultServer() as srv:
        backend = _backend(srv.url)
        r = Request("c", (Message("user", "pick"),), output_type=OutputType("choice", '["A", "B"]'))
        [c] = backend.generate([r])
    assert c.error and "not supported on the OpenAI API" in c.error
    assert srv.hits == []  # never sent


def test_n_samples_by_index_and_even_token_split():
    with FaultServer() as srv:
        [c] = _backend(srv.url).generate([req("n3", "x", n=3, temperature=0.7)])
    assert c.texts == ("echo: x",) * 3
    assert c.completion_tokens == (2, 2, 2) and c.finish_reasons == ("stop",) * 3


# --------------------------------------------------------------------------- endpoints, keys, reachability

def test_shared_queue_gives_the_slow_endpoint_less_work_and_loses_nothing():
    with FaultServer(delay_s=0.4) as slow, FaultServer() as fast:
        backend = _backend([slow.url, fast.url], concurrency=1)
        requests = [req(f"r{i}", f"number {i}") for i in range(12)]
        out = backend.generate(requests)
    assert [c.texts for c in out] == [(f"echo: number {i}",) for i in range(12)]
    counts = backend.served_counts
    assert counts[slow.url] + counts[fast.url] == 12
    assert 0 < counts[slow.url] < counts[fast.url]
    assert len(slow.hits) + len(fast.hits) == 12


def test_api_key_is_sent_but_never_kept(monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_KEY", "sekrit-123")
    with FaultServer() as srv:
        backend = _backend(srv.url, api_key_env="HARNESS_TEST_KEY")
        backend.generate([req()])
    assert srv.auth[-1] == "Bearer sekrit-123"
    settings = backend.engine_settings()
    assert settings["api_key_env"] == "HARNESS_TEST_KEY"
    assert "sekrit" not in json.dumps(settings) + repr(backend) + repr(vars(backend))
    assert backend.model_name == "fake" and backend.model_path == "/models/fake"


def test_missing_key_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("HARNESS_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError) as err:
        OpenAIBackend("http://127.0.0.1:9/v1", api_key_env="HARNESS_NO_SUCH_KEY")
    assert err.value.field == "--api-key-env" and "HARNESS_NO_SUCH_KEY" in err.value.one_line()


def test_unreachable_server_names_the_url_and_the_fix():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(EngineStartError) as err:
        OpenAIBackend(url, timeout_s=3)
    line = err.value.one_line()
    assert url in line and "harness serve" in line and "\n" not in line


# --------------------------------------------------------------------------- pure translation

def test_chat_kwargs_for_vllm():
    r = Request("k", (Message("user", "Hi"),), Sampling(temperature=0.7, top_p=0.9, top_k=40, seed=3, max_tokens=9,
                                                         stop=("\n",), n=4),
                output_type=OutputType("json", PERSON))
    kw = to_chat_kwargs(r, "m", "vllm")
    assert kw["model"] == "m" and kw["messages"] == [{"role": "user", "content": "Hi"}]
    assert (kw["n"], kw["temperature"], kw["top_p"], kw["seed"], kw["max_tokens"], kw["stop"]) == \
        (4, 0.7, 0.9, 3, 9, ["\n"])
    assert kw["extra_body"]["top_k"] == 40
    assert kw["extra_body"]["structured_outputs"]["json"] == json.loads(PERSON)
    assert kw["logprobs"] is True and kw["top_logprobs"] == 0  # n > 1: per-sample logprobs for the vote
    assert kw["stream"] is True and kw["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert "response_format" not in kw and "guided_json" not in json.dumps(kw)


def test_chat_kwargs_for_openai():
    r = Request("k", (Message("user", "Hi"),), Sampling(max_tokens=9), output_type=OutputType("json", PERSON))
    kw = to_chat_kwargs(r, "gpt", "openai", stream=False)
    assert kw["max_completion_tokens"] == 9 and "max_tokens" not in kw
    assert kw["response_format"]["type"] == "json_schema"
    assert kw["response_format"]["json_schema"]["schema"]["properties"] == json.loads(PERSON)["properties"]
    assert "extra_body" not in kw and "stream" not in kw and "logprobs" not in kw
    for bad in (OutputType("choice", '["A"]'), OutputType("regex", "a+")):
        with pytest.raises(ConfigError, match="not supported on the OpenAI API"):
            to_chat_kwargs(Request("k", r.messages, output_type=bad), "gpt", "openai")
    with pytest.raises(ConfigError, match="top_k"):
        to_chat_kwargs(Request("k", r.messages, Sampling(top_k=5)), "gpt", "openai")


def test_choice_and_regex_for_vllm_and_completion_kwargs():
    kw = to_chat_kwargs(Request("k", (Message("user", "Hi"),), output_type=OutputType("choice", '["yes", "no"]')),
                        "m")
    assert kw["extra_body"]["structured_outputs"] == {"regex": "(yes|no)"}
    kw = to_chat_kwargs(Request("k", (Message("user", "Hi"),), output_type=OutputType("regex", "[0-9]+")), "m")
    assert "regex" in kw["extra_body"]["structured_outputs"]
    ck = to_completion_kwargs(req(logprobs=True), "m", "vllm", prompt=[1, 2, 3])
    assert ck["prompt"] == [1, 2, 3] and ck["logprobs"] == 0 and ck["max_tokens"] == 64 and "messages" not in ck


def test_retry_after_and_backoff():
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after": "1000"}) == 60.0
    assert retry_after_s({"retry-after": "soon"}) is None and retry_after_s({}) is None
    assert backoff_s(3, base=0.5, retry_after=1.5) == 1.5
    for attempt in (1, 2, 3):
        d = backoff_s(attempt, base=0.5)
        assert 0.25 * 2 ** (attempt - 1) <= d <= 0.5 * 2 ** (attempt - 1)
    assert normalize_base_url("http://h:8000/") == "http://h:8000/v1"
    assert normalize_base_url("https://api.openai.com/v1") == "https://api.openai.com/v1"
    with pytest.raises(ConfigError):
        normalize_base_url("h:8000")


# --------------------------------------------------------------------------- LangChain backend (fake model)

def test_langchain_backend_on_a_fake_model():
    from langchain_core.language_models import FakeListChatModel

    from harness.backends.langchain import LangChainBackend

    backend = LangChainBackend(FakeListChatModel(responses=["a", "b", "c", "d"]), concurrency=2)
    out = backend.generate([req("one"), req("three", n=3, temperature=0.7),
                            Request("ll", (Message("user", "x"),), continuations=(" a", " b")),
                            Request("ch", (Message("user", "x"),), output_type=OutputType("choice", '["A"]'))])
    assert len(out[0].texts) == 1 and len(out[1].texts) == 3  # n=3 -> three calls
    assert "loglikelihood is not supported" in out[2].error
    assert "choice constraints are not supported" in out[3].error
    assert out[0].latency_s is not None and out[0].latency_s >= 0
    assert backend.engine_settings()["backend"] == "langchain"


def test_langchain_model_spec_loading(tmp_path, monkeypatch):
    from harness.backends.langchain import LangChainBackend, load_chat_model

    (tmp_path / "lc_models_for_test.py").write_text(
        "from langchain_core.language_models import FakeListChatModel\n"
        "chat = FakeListChatModel(responses=['hi'])\n"
        "def make():\n    return FakeListChatModel(responses=['made'])\n"
        "not_a_model = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert LangChainBackend("lc_models_for_test:chat").generate([req()])[0].texts == ("hi",)
    assert load_chat_model("lc_models_for_test:make").responses == ["made"]
    for spec, words in [("nocolon", "module:attribute"), ("no_such_module_xyz:chat", "cannot import"),
                        ("lc_models_for_test:missing", "no attribute"), ("lc_models_for_test:not_a_model", "not a")]:
        with pytest.raises(ConfigError) as err:
            load_chat_model(spec)
        assert err.value.field == "--langchain-model" and words in err.value.one_line()
    sys.modules.pop("lc_models_for_test", None)


def test_server_log_reason_and_command(tmp_path):
    from harness.backends.serve import last_log_line, server_command

    log = tmp_path / "server.log"
    log.write_text("(APIServer pid=1) INFO starting\nTraceback (most recent call last):\n"
                   '  File "x.py", line 1, in <module>\n    boom()\n'
                   "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
                   "  Value error, unknown model type `nosuch`\n"
                   "    For further information visit https://errors.pydantic.dev\n")
    line = last_log_line(log)
    assert line.startswith("pydantic_core") and "unknown model type `nosuch`" in line and "\n" not in line
    cmd = server_command("/m", served_name="smol", host="127.0.0.1", port=8123, max_model_len=2048)
    assert cmd[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert {"--enforce-eager", "--enable-prompt-tokens-details"} <= set(cmd)
    assert cmd[cmd.index("--generation-config") + 1] == "vllm" and cmd[cmd.index("--port") + 1] == "8123"
