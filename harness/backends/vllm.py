"""The vLLM backend: one offline `vllm.LLM` engine, one batched call per kind of request.

`VLLMBackend.generate(requests)` sorts the requests into kinds and makes one engine call per kind:
chat generation (`LLM.chat` with one `SamplingParams` per conversation), completion-format generation
(`LLM.generate` on the plain prompt's token ids, no chat template), beam search (`LLM.beam_search` on
token ids) and log-likelihood scoring (`LLM.generate` with `prompt_logprobs` over context +
continuation token ids, reading the shared prefix from the prefix cache: see `_run_score`).
Completions come back in request order.

Prompts are measured with the engine's tokenizer first: a prompt that leaves no room in the
model's context becomes `Completion.failed(...)` and is not sent; `max_tokens` is clamped to the
room left, so one request can never make the engine reject the whole batch.

Timing rule. With stat logging on (the default, `log_stats=True`), vLLM 0.32 fills
`RequestOutput.metrics` (a `RequestStateStats`) for every request:
    ttft_s    = metrics.first_token_latency                       (arrival -> first token)
    latency_s = first_token_latency + (last_token_ts - first_token_ts)   (arrival -> last token)
Arrival is when the request entered the engine, so within a batch these include queueing behind
the other requests. Where no per-request metrics exist (beam search, which runs many internal
one-token requests, and `log_stats=False`), the call's wall time is apportioned to its requests in
proportion to their prompt + completion tokens (the shares sum to the wall time), and ttft_s is None.
A log-likelihood request takes the largest latency among its continuations (they run together).
"""
from __future__ import annotations

import gc
import os
import time
from typing import Any, Sequence

from .engine_versions import check_vllm
from ..errors import EngineStartError, missing_extra
from ..system.cpu import cuda_available as _cuda_available, has_bf16_matmul
from ..system.procs import guard
from ..system.sockets import keep_engine_sockets_local
from .guided import structured_outputs
from .models import resolve_model
from ..records import Completion, OutputType, Request, Sampling
from .timing import _timing, apportion
from .loglik import PromptLogprobScoring
from .base import BackendBase
from .preload import preloaded
from .engine_log import filtered_stderr, install_filters, own_session
from .chat import cut_at_stop, to_chat_messages

DEFAULT_CPU_KV_CACHE_BYTES = 512 * 2**20
CPU_BLOCK_SIZE = 32  # the CPU build's smallest KV block; chosen by bench/defaults.py (docs/engine.md)
STEP_TIMEOUT_S = 3600  # seconds one engine step may take before vLLM declares the engine dead (its default: 300)
SHUTDOWN_GRACE_S = 20  # seconds a closing engine waits for its worker before killing it


# --------------------------------------------------------------------------- pure translation

constraint_for = structured_outputs  # the former name (harness.backends.guided is the one place)


def to_sampling_params(sampling: Sampling, output_type: OutputType | None = None) -> dict[str, Any]:
    """Sampling (+ output type) -> keyword arguments of `vllm.SamplingParams`.

    temperature 0 is greedy in vLLM; top_k 0 means off. `logprobs=0` (the sampled token only) is
    asked for when n > 1 or logprobs are wanted, because vLLM fills `cumulative_logprob` only then.
    A constraint is given as a dict under "structured_outputs" (made into
    `StructuredOutputsParams` by `_sampling_params`).

    >>> to_sampling_params(Sampling(temperature=0.7, n=4))["logprobs"]
    0
    """
    kwargs: dict[str, Any] = {
        "n": sampling.n,
        "temperature": float(sampling.temperature),
        "top_p": float(sampling.top_p),
        "top_k": max(int(sampling.top_k), 0),
        "seed": sampling.seed,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.stop:
        kwargs["stop"] = list(sampling.stop)
    if sampling.n > 1 or sampling.logprobs:
        kwargs["logprobs"] = 0
    if output_type is not None:
        kwargs["structured_outputs"] = structured_outputs(output_type)
    return kwargs


# --------------------------------------------------------------------------- the backend

class VLLMBackend(PromptLogprobScoring, BackendBase):
    """A local vLLM engine (built on first use).

    >>> backend = VLLMBackend()                    # the bundled SmolLM2-135M-Instruct  # doctest: +SKIP
    >>> backend.generate([Request("q1", (Message("user", "Hi"),))])  # doctest: +SKIP
    """

    name = "vllm"
    spawns_processes = True  # the CPU platform spawns its engine processes (they re-import __main__)
    supports_prefix_cache_reset = True

    def __init__(self, model: str | None = None, *, max_model_len: int = 2048,
                 kv_cache_memory_bytes: int | None = None, gpu_memory_utilization: float | None = None,
                 enforce_eager: bool = True, enable_prefix_caching: bool = True,
                 block_size: int | None = None, kv_cache_dtype: str = "auto", seed: int = 0,
                 structured_outputs_backend: str = "auto", speculative_ngram: int | None = None,
                 tensor_parallel_size: int = 1, pipeline_parallel_size: int = 1,
                 distributed_executor_backend: str | None = None, dtype: str | None = None,
                 log_stats: bool = True, use_tqdm: bool = True, allow_untested_vllm: bool | None = None) -> None:
        self.model_path, self.model_name = resolve_model(model)
        self.allow_untested_vllm = allow_untested_vllm  # None: HARNESS_ALLOW_UNTESTED_VLLM decides
        self.vllm_check: dict | None = None  # what check_vllm found at start (run.json: engine.vllm_check)
        self.max_model_len = max_model_len
        self.use_tqdm = use_tqdm
        self._stderr_copier: Any = None  # the thread that copies the engine processes' stderr (engine_log.py)
        self._settings: dict[str, Any] = {
            "model": self.model_path, "dtype": dtype or default_dtype(), "max_model_len": max_model_len, "seed": seed,
            "enforce_eager": enforce_eager, "enable_prefix_caching": enable_prefix_caching,
            "kv_cache_dtype": kv_cache_dtype,
            "structured_outputs_config": {"backend": structured_outputs_backend},
            "tensor_parallel_size": tensor_parallel_size,
            "pipeline_parallel_size": pipeline_parallel_size,
            "disable_log_stats": not log_stats,
        }
        if block_size is not None:
            self._settings["block_size"] = block_size
        if not _cuda_available():
            # CPU default block size 32, not vLLM's 128 (docs/engine.md "Engine defaults": 5-shot
            # generation 0.69x the wall; the last partial block of a shared prefix is reused)
            self._settings.setdefault("block_size", CPU_BLOCK_SIZE)
            # vLLM 0.32 CPU: a seeded sampling request whose prompt is split by chunked prefill crashes the
            # engine ("CPU Generator does not use offset": the discarded-token rewind is CUDA-only).
            # Without chunked prefill no prompt is split, so seeded sampling is safe in any batch.
            self._settings["enable_chunked_prefill"] = False
            self._settings["max_num_batched_tokens"] = max(max_model_len, 8192)
        if distributed_executor_backend is not None:
            self._settings["distributed_executor_backend"] = distributed_executor_backend
        if speculative_ngram:
            self._settings["speculative_config"] = {
                "method": "ngram", "num_speculative_tokens": int(speculative_ngram),
                "prompt_lookup_max": max(int(speculative_ngram), 1), "prompt_lookup_min": 1}
        if gpu_memory_utilization is not None:
            self._settings["gpu_memory_utilization"] = gpu_memory_utilization
        if kv_cache_memory_bytes is not None:
            self._settings["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes)
        elif gpu_memory_utilization is None and not _cuda_available() \
                and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            # vLLM's CPU default (a share of node memory) fails on small machines.
            self._settings["kv_cache_memory_bytes"] = DEFAULT_CPU_KV_CACHE_BYTES
        self._llm: Any = None
        self.preloaded: list[str] | None = None  # what preload.py put in LD_PRELOAD for the engine (once started)

    # ---- engine lifecycle
    @classmethod
    def from_cli(cls, args: Any, *, model: str | None, engine_options: dict[str, Any]) -> "VLLMBackend":
        return cls(model, **engine_options)

    def engine_settings(self) -> dict[str, Any]:
        """Everything passed to `vllm.LLM(...)`, and once started the version check (for run.json)."""
        settings = self._llm_kwargs()
        if self.vllm_check is not None:
            settings["vllm_check"] = dict(self.vllm_check)
        if self.preloaded is not None:
            settings["ld_preload"] = list(self.preloaded)  # not in the identity: no effect on answers
        return settings

    def _llm_kwargs(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._settings.items()}

    @property
    def llm(self) -> Any:
        if self._llm is None:
            self.vllm_check = check_vllm(self.allow_untested_vllm)  # before the expensive part
            os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout is the caller's
            quiet = not self.use_tqdm  # quiet(): no bar, no INFO log, none of the warnings docs/engine.md explains
            if quiet:
                os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # read as vllm is imported (and by its processes)
                install_filters()
            # A busy CPU can take over vLLM's 5 s to stop a worker; its forced kill then warns on a normal exit.
            os.environ.setdefault("VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS", str(SHUTDOWN_GRACE_S))
            # vLLM kills the engine when one model step takes over 300 s, which a long batch on a small CPU can
            os.environ.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", str(STEP_TIMEOUT_S))
            keep_engine_sockets_local(os.environ, ray=self._settings.get("distributed_executor_backend") == "ray")
            guard()  # the engine ends with this process however it ends, library callers included (docs/faults.md)
            try:
                from vllm import LLM
            except ImportError as exc:
                raise missing_extra("vllm", "cpu") from exc
            try:
                # tcmalloc for the spawned engine processes (preload.py); their stderr without the NOISE lines
                # (quiet), in a session of their own so that a terminal's Ctrl-C is the harness's (engine_log.py)
                with preloaded() as added, filtered_stderr(quiet) as self._stderr_copier, own_session():
                    self._llm = LLM(**self._llm_kwargs(), use_tqdm_on_load=not quiet)
                self.preloaded = added
            except Exception as exc:  # vLLM raises many types here; report one line
                self._join_stderr(5.0)  # what the engine said as it failed comes before the one line
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                raise EngineStartError(f"the vLLM engine failed to start: {type(exc).__name__}: {first}",
                                       where=self.model_path,
                                       fix="check the model folder, lower max_model_len or the KV cache "
                                           "size, and read the engine log above") from None
        return self._llm

    def start(self) -> None:
        """Start the engine now (the runner does this before it touches the run folder)."""
        self.llm  # noqa: B018 - the property builds the engine

    @property
    def tokenizer(self) -> Any:
        return self.llm.get_tokenizer()

    def close(self) -> None:
        """Stop the engine and free its memory (call before starting another engine)."""
        if self._llm is None:
            return
        core = getattr(getattr(self._llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown(timeout=SHUTDOWN_GRACE_S + 10)  # the engine core first waits for its worker
            except TypeError:  # a vLLM whose shutdown takes no timeout
                core.shutdown()
        self._llm = None
        self._join_stderr()  # the engine's last lines come before anything printed after close()
        gc.collect()

    def quiet(self) -> None:
        """No progress bars, no INFO logs, none of the warnings about the harness's own defaults (call before
        start(); --verbose does not call it). See harness/backends/engine_log.py and docs/engine.md."""
        self.use_tqdm = False

    def _join_stderr(self, timeout: float = 10.0) -> None:
        copier, self._stderr_copier = self._stderr_copier, None
        if copier is not None:
            copier.join(timeout)

    def reset_prefix_cache(self) -> bool:
        """Empty the prefix cache (the latency probe does, so each probe request pays its whole prompt)."""
        if self._llm is None:
            return False
        return bool(self._llm.reset_prefix_cache())

    def stats(self) -> dict[str, float]:
        """Cumulative engine counters from `LLM.get_metrics()` ({} when stat logging is off)."""
        if self._llm is None or self._settings["disable_log_stats"]:
            return {}
        try:
            metrics = self._llm.get_metrics()
        except Exception:  # metrics are a nicety; never fail a run over them
            return {}
        wanted = {"vllm:prompt_tokens": "prompt_tokens",
                  "vllm:prompt_tokens_cached": "prompt_tokens_cached",
                  "vllm:prefix_cache_queries": "prefix_cache_queries",
                  "vllm:prefix_cache_hits": "prefix_cache_hits",
                  "vllm:generation_tokens": "generation_tokens",
                  "vllm:num_preemptions": "num_preemptions",
                  "vllm:kv_cache_usage_perc": "kv_cache_usage",
                  "vllm:spec_decode_num_draft_tokens": "spec_decode_draft_tokens",
                  "vllm:spec_decode_num_accepted_tokens": "spec_decode_accepted_tokens"}
        out: dict[str, float] = {}
        for m in metrics:
            if m.name in wanted and hasattr(m, "value"):
                out[wanted[m.name]] = out.get(wanted[m.name], 0) + m.value
            elif m.name == "vllm:prompt_tokens_by_source" and m.labels.get("source") == "local_compute":
                out["prompt_tokens_computed"] = out.get("prompt_tokens_computed", 0) + m.value
        return out

    # ---- the protocol method
    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """One Completion per request, in order; see the module docstring for the batching."""
        results: list[Completion | None] = [None] * len(requests)
        chat, text, beam, score = [], [], [], []
        for i, req in enumerate(requests):
            (score if req.continuations else beam if req.sampling.beam_width > 0
             else chat if req.prompt is None else text).append(i)
        if chat:
            self._run_chat(requests, chat, results)
        if text:
            self._run_chat(requests, text, results)
        if beam:
            self._run_beam(requests, beam, results)
        if score:
            self._run_score(requests, score, results)
        return [r if r is not None else Completion.failed("no result from the engine") for r in results]

    # ---- helpers
    def _prompt_ids(self, request: Request) -> list[int]:
        """Chat format: the chat template's text, encoded without adding special tokens (what
        `LLM.chat` sends). Completion format: the plain text with the tokenizer's own special tokens
        (a BOS where the tokenizer adds one, as base models need; none for SmolLM2)."""
        tok = self.tokenizer
        if request.prompt is not None:
            return list(tok.encode(request.prompt))
        text = tok.apply_chat_template(to_chat_messages(request), add_generation_prompt=True,
                                       tokenize=False)
        return list(tok.encode(text, add_special_tokens=False))

    def _too_long(self, n_prompt: int, *, room: int = 1) -> str | None:
        if n_prompt + room > self.max_model_len:
            return (f"prompt of {n_prompt} tokens exceeds the model's context of "
                    f"{self.max_model_len}" + ("" if room <= 1 else f" (with {room} tokens to add)"))
        return None

    def _sampling_params(self, kwargs: dict[str, Any]) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        kwargs = dict(kwargs)
        if "structured_outputs" in kwargs:
            kwargs["structured_outputs"] = StructuredOutputsParams(**kwargs["structured_outputs"])
        return SamplingParams(**kwargs)

    def _run_chat(self, requests: Sequence[Request], idx: list[int],
                  results: list[Completion | None]) -> None:
        """Generation: `LLM.chat` for chat-format requests, `LLM.generate` on token ids for
        completion-format ones (`idx` holds one kind)."""
        send, conversations, params = [], [], []
        for i in idx:
            req = requests[i]
            ids = self._prompt_ids(req)
            n_prompt = len(ids)
            error = self._too_long(n_prompt)
            if error:
                results[i] = Completion.failed(error)
                continue
            kwargs = to_sampling_params(req.sampling, req.output_type)
            kwargs["max_tokens"] = min(kwargs["max_tokens"], self.max_model_len - n_prompt)
            send.append(i)
            conversations.append(to_chat_messages(req) if req.prompt is None else {"prompt_token_ids": ids})
            params.append(self._sampling_params(kwargs))
        if not send:
            return
        start = time.perf_counter()
        if requests[send[0]].prompt is None:
            outputs = self.llm.chat(conversations, params, use_tqdm=self.use_tqdm)
        else:
            outputs = self.llm.generate(conversations, params, use_tqdm=self.use_tqdm)
        wall = time.perf_counter() - start
        sizes = [len(o.prompt_token_ids or ()) + sum(len(c.token_ids) for c in o.outputs) for o in outputs]
        shares = apportion(wall, sizes)
        for i, out, share in zip(send, outputs, shares):
            samples = sorted(out.outputs, key=lambda c: c.index)
            latency, ttft = _timing(out.metrics)
            results[i] = Completion(
                texts=tuple(c.text for c in samples),
                prompt_tokens=len(out.prompt_token_ids or ()),
                completion_tokens=tuple(len(c.token_ids) for c in samples),
                finish_reasons=tuple(c.finish_reason for c in samples),
                cumulative_logprobs=tuple(c.cumulative_logprob for c in samples),
                latency_s=latency if latency is not None else share,
                ttft_s=ttft,
                cached_prompt_tokens=out.num_cached_tokens)

    def _run_beam(self, requests: Sequence[Request], idx: list[int],
                  results: list[Completion | None]) -> None:
        from vllm.sampling_params import BeamSearchParams, StructuredOutputsParams

        groups: dict[tuple, list[tuple[int, list[int]]]] = {}
        for i in idx:
            req, s = requests[i], requests[i].sampling
            ids = self._prompt_ids(req)
            error = self._too_long(len(ids))
            if error:
                results[i] = Completion.failed(error)
                continue
            max_tokens = min(s.max_tokens, self.max_model_len - len(ids))
            key = (s.beam_width, max_tokens, float(s.temperature), req.output_type)
            groups.setdefault(key, []).append((i, ids))
        tok = self.tokenizer if groups else None
        for (width, max_tokens, temperature, output_type), members in groups.items():
            so = StructuredOutputsParams(**structured_outputs(output_type)) if output_type else None
            params = BeamSearchParams(beam_width=width, max_tokens=max_tokens,
                                      temperature=temperature, structured_outputs=so)
            start = time.perf_counter()
            outputs = self.llm.beam_search([{"prompt_token_ids": ids} for _, ids in members], params,
                                           use_tqdm=False)
            wall = time.perf_counter() - start
            done = []
            for (i, ids), out in zip(members, outputs):
                best = out.sequences[0]
                new = best.tokens[len(ids):]
                text = tok.decode(new, skip_special_tokens=True)
                text, stopped = cut_at_stop(text, requests[i].sampling.stop)
                finish = "stop" if stopped or (new and new[-1] == tok.eos_token_id) else "length"
                done.append((i, len(ids), len(new), text, finish, best.cum_logprob))
            shares = apportion(wall, [p + c for _, p, c, *_ in done])
            for (i, n_prompt, n_new, text, finish, cum), share in zip(done, shares):
                results[i] = Completion(texts=(text,), prompt_tokens=n_prompt,
                                        completion_tokens=(n_new,), finish_reasons=(finish,),
                                        cumulative_logprobs=(float(cum),), latency_s=share)


def default_dtype() -> str:
    """bfloat16 on a GPU or a CPU with bf16 matrix instructions, else float32: without them bf16 ran 40x
    slower (docs/engine.md, "The model dtype"). run.json records the choice."""
    return "bfloat16" if _cuda_available() or has_bf16_matmul() else "float32"
