"""The seams of issue 10: the declared backend contract and its table, the caching wrapper, backend
identities, one guided-decoding module, the shared chat helpers, and the runner that leaves the report
to its caller. Unit tests (scripted backend, no engine); the real engine and server paths run these
same modules in test_vllm_backend.py, test_server.py and test_openai_unit.py."""
from __future__ import annotations

import asyncio
import json
import re

import pytest

import harness
from harness.backends import BACKENDS, BackendBase, backend_class
from harness.backends.base import Backend, check_backend, stats_delta
from harness.backends.chat import cut_at_stop, run_sync, to_chat_messages
from harness.backends.scripted import ScriptedBackend
from harness.backends.cache import CachedBackend, RequestCache, model_identity
from harness.errors import ConfigError
from harness.backends.guided import json_schema, response_format, structured_outputs, unsupported
from harness.records import Completion, Message, OutputType, Request


class Recorder(BackendBase):
    """A backend that records which lifecycle methods the runner called."""

    name = "recorder"
    model_name = "rec"
    preferred_chunk_size = 3

    def __init__(self):
        self.calls: list[str] = []
        self.batches: list[int] = []

    def generate(self, requests):
        self.batches.append(len(requests))
        return [Completion(texts=("The answer is yes.",)) for _ in requests]

    def start(self):
        self.calls.append("start")

    def stats(self):
        self.calls.append("stats")
        return {"prefix_cache_queries": 10 * len(self.calls), "prefix_cache_hits": 5 * len(self.calls)}

    def close(self):
        self.calls.append("close")


# -- the contract and the runner -------------------------------------------------------------------
def test_runner_calls_the_declared_lifecycle(tmp_path):
    b = Recorder()
    df = harness.run(["coin_flip"], ["zero_shot"], backend=b, limit=7, out=tmp_path / "r", progress=False, cache=False,
                     latency_probe=0)
    assert b.calls == ["start", "stats", "stats"]  # the caller closes a backend it passed in
    assert b.batches == [3, 3, 1]                  # preferred_chunk_size is the chunk
    meta = harness.load_run(tmp_path / "r")["run"]
    assert meta["engine_stats"] == {"prefix_cache_queries": 10, "prefix_cache_hits": 5, "prefix_cache_hit_rate": 0.5}
    assert meta["engine"] == {"backend": "recorder"} and meta["backend"] == "recorder"
    assert len(df) == 7


def test_an_object_without_the_contract_is_refused_by_name(tmp_path):
    class Bare:
        model_name = "bare"

        def generate(self, requests):
            return []

    with pytest.raises(TypeError, match="Bare does not implement the backend contract"):
        harness.run(["coin_flip"], ["zero_shot"], backend=Bare(), limit=2, out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    assert isinstance(Recorder(), Backend) and check_backend(Recorder())


def test_stats_delta_counts_this_run_and_keeps_gauges():
    before = {"prompt_tokens": 100, "prefix_cache_queries": 40, "prefix_cache_hits": 10, "kv_cache_usage": 0.9}
    after = {"prompt_tokens": 160, "prefix_cache_queries": 80, "prefix_cache_hits": 40, "kv_cache_usage": 0.2}
    assert stats_delta(before, after) == {"prompt_tokens": 60, "prefix_cache_queries": 40, "prefix_cache_hits": 30,
                                          "kv_cache_usage": 0.2, "prefix_cache_hit_rate": 0.75}


def test_run_leaves_the_report_to_its_caller(tmp_path):
    kw = dict(backend=ScriptedBackend(lambda r: "The answer is yes."), limit=4, progress=False, cache=False)
    harness.run(["coin_flip"], ["zero_shot", "cot"], out=tmp_path / "plain", **kw)
    assert (tmp_path / "plain" / "predictions.parquet").is_file() and not (tmp_path / "plain" / "report.html").exists()
    harness.run(["coin_flip"], ["zero_shot", "cot"], out=tmp_path / "rep", report=True, **kw)
    assert (tmp_path / "rep" / "report.html").is_file() and (tmp_path / "rep" / "report.md").is_file()
    harness.run(["coin_flip"], ["zero_shot"], out=tmp_path / "old", write_report=True, **kw)  # the former name
    assert (tmp_path / "old" / "report.html").is_file()


# -- the table -------------------------------------------------------------------------------------
def test_backend_table_names_every_cli_backend():
    from harness.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    choices = next(a.choices for a in run._actions if a.dest == "backend")
    assert list(choices) == list(BACKENDS) == ["vllm", "openai", "langchain", "ray"]
    from harness.backends.vllm import VLLMBackend

    assert backend_class("vllm") is VLLMBackend
    for name in BACKENDS:
        cls = backend_class(name)
        assert issubclass(cls, BackendBase) and cls.name == name and "from_cli" in vars(cls)
    with pytest.raises(ConfigError, match="unknown backend 'opneai'") as exc:
        backend_class("opneai")
    assert "did you mean 'openai'" in exc.value.one_line()


# -- the caching wrapper ---------------------------------------------------------------------------
def test_cached_backend_implements_the_contract_explicitly(tmp_path):
    inner = Recorder()
    cached = CachedBackend(inner, RequestCache(tmp_path / "cache"))
    assert "__getattr__" not in vars(CachedBackend)
    assert isinstance(cached, Backend)
    with pytest.raises(AttributeError):
        cached.batches  # noqa: B018 - nothing is forwarded implicitly
    cached.start(), cached.stats(), cached.close()
    assert inner.calls == ["start", "stats", "close"]
    assert (cached.model_name, cached.preferred_chunk_size, cached.identity()) == ("rec", 3, inner.identity())
    reqs = [Request(f"k{i}", (Message("user", f"q{i}"),)) for i in range(3)]
    cached.generate(reqs)
    again = cached.generate(reqs[:2] + [Request("k9", (Message("user", "new"),))])
    assert inner.batches == [3, 1] and [c.cached for c in again] == [True, True, False]


# -- identities ------------------------------------------------------------------------------------
def test_langchain_identity_has_the_model_class_and_base_url():
    pytest.importorskip("langchain_openai")
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_openai import ChatOpenAI

    from harness.backends.langchain import LangChainBackend

    a = LangChainBackend(ChatOpenAI(base_url="http://127.0.0.1:1/v1", api_key="EMPTY", model="smol"))
    b = LangChainBackend(ChatOpenAI(base_url="http://127.0.0.1:2/v1", api_key="EMPTY", model="smol"))
    fake = LangChainBackend(FakeListChatModel(responses=["x"]))
    ida, idb = json.loads(a.identity()), json.loads(b.identity())
    assert ida["base_url"] == "http://127.0.0.1:1/v1" and idb["base_url"] == "http://127.0.0.1:2/v1"
    assert ida["chat_model"] == "langchain_openai.chat_models.base.ChatOpenAI"
    assert len({a.identity(), b.identity(), fake.identity()}) == 3
    assert a.identity() == LangChainBackend(ChatOpenAI(base_url="http://127.0.0.1:1/v1", api_key="EMPTY",
                                                       model="smol")).identity()
    assert "EMPTY" not in a.identity()


def test_scripted_identity_is_unchanged():
    """The request cache keeps its keys: the identity text of a backend is what it was before the
    contract was declared (model, path and the whitelisted settings, sorted)."""
    def fn(r):
        return "x"

    b = ScriptedBackend(fn, model_name="m")
    assert model_identity(b) == json.dumps({"model": "m", "path": "m", "backend": "scripted",
                                            "endpoint": fn.__qualname__}, sort_keys=True)


# -- guided decoding -------------------------------------------------------------------------------
def test_structured_outputs_for_every_kind():
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    assert structured_outputs(OutputType("json", json.dumps(schema))) == {"json": schema}
    choice = structured_outputs(OutputType("choice", '["New York", "Paris?", "A|B"]'))["regex"]
    for ok in ("New York", "Paris?", "A|B"):
        assert re.fullmatch(choice, ok)
    for bad in ("Paris", "A", "New York ", "AB"):
        assert not re.fullmatch(choice, bad)
    regex = structured_outputs(OutputType("regex", r"-?[0-9]{1,3}"))["regex"]
    assert re.fullmatch(regex, "-12") and not re.fullmatch(regex, "1234")
    with pytest.raises(ConfigError, match="unknown output type kind 'grammar'"):
        structured_outputs(OutputType("grammar", "x"))


def test_the_server_and_offline_paths_send_the_same_constraint():
    from harness.backends.openai import constraint_kwargs
    from harness.backends.vllm import to_sampling_params
    from harness.records import Sampling

    for t in (OutputType("choice", '["yes", "no"]'), OutputType("regex", "[a-z]+"), OutputType("json", '{"type": "object"}')):
        offline = to_sampling_params(Sampling(), t)["structured_outputs"]
        assert constraint_kwargs(t, "vllm") == {"extra_body": {"structured_outputs": offline}}


def test_json_only_targets_refuse_other_kinds():
    schema = {"type": "object"}
    rf = response_format(OutputType("json", json.dumps(schema)))["response_format"]
    # OpenAI's strict mode wants every object closed: Outlines' adapter adds additionalProperties false
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"] == {**schema, "additionalProperties": False}
    assert json_schema(OutputType("json", json.dumps(schema)), "langchain") == schema
    assert unsupported(OutputType("json", "{}"), "openai") is None
    assert "not supported on the OpenAI API" in unsupported(OutputType("regex", "x"), "openai")
    with pytest.raises(ConfigError, match="choice constraints are not supported on the langchain backend"):
        json_schema(OutputType("choice", '["a"]'), "langchain")


# -- chat helpers ----------------------------------------------------------------------------------
def test_chat_helpers():
    r = Request("k", (Message("system", "S"), Message("user", "U")))
    assert to_chat_messages(r) == [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert cut_at_stop("The answer is 4.\nQ: next", ["\nQ:", "answer"]) == ("The ", True)
    assert cut_at_stop("no stop here", ["\nQ:", ""]) == ("no stop here", False)


def test_run_sync_works_inside_a_running_loop():
    async def add(a, b):
        await asyncio.sleep(0)
        return a + b

    assert run_sync(add(1, 2)) == 3

    async def notebook_cell():  # a notebook's code runs inside an event loop
        return run_sync(add(3, 4))

    assert asyncio.run(notebook_cell()) == 7
    loop = asyncio.new_event_loop()
    try:
        assert run_sync(add(5, 6), loop=loop) == 11 and not loop.is_closed()
    finally:
        loop.close()


def test_a_third_party_backend_written_from_the_contract_alone_runs_a_task(tmp_path):
    """A backend that does not inherit BackendBase and implements only what harness.backends.base.Backend
    declares (issue 21): the runner reads no class name, private function or undeclared attribute of it."""
    from harness.records import Completion

    class ThirdParty:  # no harness base class
        name = "third-party"
        model_name = "echo-model"
        model_path = None
        preferred_chunk_size = None
        spawns_processes = False
        supports_prefix_cache_reset = False

        def __init__(self):
            self.events = []

        def generate(self, requests):
            self.events.append(("generate", len(requests)))
            return [Completion(texts=("The answer is yes.",), prompt_tokens=3, completion_tokens=(4,))
                    for _ in requests]

        def generate_chunks(self, chunks):  # one at a time, as BackendBase does
            from harness.backends.base import ChunkResult

            for i, requests in enumerate(chunks):
                yield ChunkResult(i, self.generate(requests), 0.0)

        def start(self):
            self.events.append(("start",))

        def close(self):
            self.events.append(("close",))

        def stats(self):
            return {}

        def engine_settings(self):
            return {"backend": self.name}

        def identity(self):
            return "third-party/echo-model"

        def quiet(self):
            self.events.append(("quiet",))

        def rename(self, model_name):
            self.model_name = model_name

        def reset_prefix_cache(self):
            return False

    b = ThirdParty()
    df = harness.run(["coin_flip"], ["zero_shot"], backend=b, limit=5, out=tmp_path / "r", progress=False, cache=False)
    assert len(df) == 5 and set(df["model"]) == {"echo-model"} and df["error"].isna().all()
    assert ("start",) in b.events and ("generate", 5) in b.events and ("quiet",) in b.events
    assert ("close",) not in b.events  # the caller's backend: the caller closes it
