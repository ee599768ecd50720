"""Log-likelihood scoring helpers shared by the vLLM backends: the lm-evaluation-harness pair
tokenization and the reading of a continuation's summed prompt log-probability."""
from __future__ import annotations

import math
import time
from typing import Any, Sequence

from ..records import Completion, Request
from .timing import _timing, apportion


def pair_texts(context: str, continuation: str) -> tuple[str, str]:
    """(context text, whole text) as lm-evaluation-harness's `_encode_pair` encodes them: whitespace
    at the end of the context moves to the front of the continuation."""
    stripped = context.rstrip()
    return stripped, stripped + context[len(stripped):] + continuation


def encode_pair(tok: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-evaluation-harness's `_encode_pair`: the continuation's ids are what follows the context's
    own encoding in the encoding of the whole text (`pair_texts`), so a token that would straddle
    the boundary is not split. Both encodings use the tokenizer's own special tokens."""
    ctx, [cont] = encode_pairs(tok, context, [continuation])
    return ctx, cont


def encode_pairs(tok: Any, context: str, continuations: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """`encode_pair` for several continuations of one context (the context is encoded once)."""
    ctx_text = pair_texts(context, "")[0]
    ctx = list(tok.encode(ctx_text))
    return ctx, [list(tok.encode(pair_texts(context, c)[1]))[len(ctx):] for c in continuations]


def continuation_logprob(out: Any, ids: Sequence[int], n_ctx: int) -> float | None:
    """Sum of `prompt_logprobs[pos][ids[pos]]` over the continuation; None when a row of it was
    read from the prefix cache instead of computed (its value is then not filled in)."""
    if (out.num_cached_tokens or 0) > n_ctx - 1:
        return None
    plp = out.prompt_logprobs
    total = 0.0
    for pos in range(n_ctx, len(ids)):
        entry = plp[pos]
        if not entry or ids[pos] not in entry:
            return None
        total += entry[ids[pos]].logprob
    return total


class PromptLogprobScoring:
    """The log-likelihood part of `VLLMBackend` (a mixin: it uses the backend's engine, tokenizer,
    `_prompt_ids`, `_too_long` and `_sampling_params`)."""

    def _score_pairs(self, req: Request) -> list[tuple[list[int], list[int]]]:
        """(context ids, continuation ids) per continuation. Chat format: the chat-template prompt,
        then each continuation encoded on its own. Completion format: `encode_pair` (the
        lm-evaluation-harness rule)."""
        tok = self.tokenizer
        if req.prompt is not None:
            ctx, conts = encode_pairs(tok, req.prompt, req.continuations)
            return [(ctx, c) for c in conts]
        ids = self._prompt_ids(req)
        return [(ids, list(tok.encode(c, add_special_tokens=False))) for c in req.continuations]

    def _run_score(self, requests: Sequence[Request], idx: list[int],
                   results: list[Completion | None]) -> None:
        prompts, ctx_lens, owners = [], [], []  # one engine prompt per (request, continuation)
        meta: dict[int, tuple[int, list[int]]] = {}
        for i in idx:
            pairs = self._score_pairs(requests[i])
            longest = max(len(c) + len(x) for c, x in pairs)
            error = self._too_long(longest)
            if error or any(not x for _, x in pairs):
                results[i] = Completion.failed(error or "empty continuation: nothing to score")
                continue
            meta[i] = (len(pairs[0][0]), [len(x) for _, x in pairs])
            for c, x in pairs:
                prompts.append(c + x)
                ctx_lens.append(len(c))
                owners.append(i)
        if not prompts:
            return
        start = time.perf_counter()
        totals, outputs = self.score_continuations(prompts, ctx_lens)
        wall = time.perf_counter() - start
        shares = apportion(wall, [len(p) for p in prompts])
        per_req: dict[int, list[tuple[float, float | None, float, int]]] = {}
        for total, out, owner, share in zip(totals, outputs, owners, shares):
            latency, _ = _timing(out.metrics)
            per_req.setdefault(owner, []).append((total, latency, share, out.num_cached_tokens or 0))
        for i, scored in per_req.items():
            latencies = [lat for _, lat, _, _ in scored if lat is not None]
            results[i] = Completion(
                texts=(), prompt_tokens=meta[i][0],
                continuation_logprobs=tuple(s for s, *_ in scored),
                continuation_tokens=tuple(meta[i][1]),
                cached_prompt_tokens=min(c for *_, c in scored),
                latency_s=max(latencies) if latencies else sum(sh for _, _, sh, _ in scored))

    def score_continuations(self, prompts: list[list[int]], ctx_lens: list[int]) -> tuple[list[float], list[Any]]:
        """Summed log-probability of `prompt[ctx_len:]` given `prompt[:ctx_len]`, per prompt, as a plain
        `prompt_logprobs` request computes it, reading shared prefixes from the prefix cache
        (`skip_reading_prefix_cache=False`, `detokenize=False`: the cached rows are left unfilled).
        A pair whose cache hit covers its whole context is scored again with the cache skipped; the
        first pair runs alone so the prefix is cached before the rest. See docs/engine.md."""
        reuse = bool(self._settings.get("enable_prefix_caching", True))
        params = self._sampling_params({"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0,
                                        "detokenize": False, "skip_reading_prefix_cache": not reuse})
        send = [{"prompt_token_ids": p} for p in prompts]
        head = 1 if reuse and len(send) > 1 else 0
        outputs = list(self.llm.generate(send[:head], params, use_tqdm=False)) if head else []
        outputs += self.llm.generate(send[head:], params, use_tqdm=self.use_tqdm)
        totals = [continuation_logprob(o, p, n) for o, p, n in zip(outputs, prompts, ctx_lens)]
        redo = [k for k, t in enumerate(totals) if t is None]
        if redo:
            plain = self._sampling_params({"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0,
                                           "detokenize": False, "skip_reading_prefix_cache": True})
            again = self.llm.generate([send[k] for k in redo], plain, use_tqdm=False)
            for k, o in zip(redo, again):
                outputs[k] = o
                totals[k] = continuation_logprob(o, prompts[k], ctx_lens[k])
        return [t if t is not None else -math.inf for t in totals], outputs
