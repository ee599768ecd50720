"""The harness's log-likelihood on the real engine against an independent raw-vLLM scorer.

The reference (`bench/parity.py`, no harness code) writes the standard prompts from the raw JSONL
files, tokenizes like lm-evaluation-harness and scores one plain `prompt_logprobs` request per
(item, choice) pair with the prefix cache skipped. The full-size check is `python -m bench --only
P6,PARITY`; these are its small versions (100 items)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

import harness
from bench.parity import reference_items, reference_scores, reference_sums
from harness.records import Request, Sampling
from harness.strategies import parse_strategy
from harness.tasks import load_task

pytestmark = pytest.mark.engine
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")


@needs_data
def test_prefix_reusing_loglikelihood_equals_plain_prompt_logprobs(engine):
    """100 ARC-Challenge items behind 5 fixed exemplars (a shared prefix of ~300 tokens): every summed
    log-probability within 1e-3 of the plain per-pair reference, the same choice on all 100, and the
    shared prefix really read from the prefix cache."""
    task = load_task("arc_challenge", data_dir=DATA)
    strategy = parse_strategy("few_shot:k=5")
    reqs = [strategy.expand(task, ex)[0] for ex in task.examples[5:105]]
    assert all(r.prompt.startswith(reqs[0].prompt.rsplit("\n\n", 1)[0]) for r in reqs)
    engine.llm.reset_prefix_cache()
    before = engine.stats()
    comps = engine.generate(reqs)
    after = engine.stats()
    ref = reference_sums(engine.llm, [(r.prompt, c) for r in reqs for c in r.continuations])
    k = 0
    for r, c in zip(reqs, comps):
        want = ref[k:k + len(r.continuations)]
        k += len(r.continuations)
        assert c.error is None and len(c.continuation_logprobs) == len(want)
        for got, exp in zip(c.continuation_logprobs, want):
            assert math.isfinite(got) and abs(got - exp) <= 1e-3, (r.key, got, exp)
        assert max(range(len(want)), key=want.__getitem__) == \
            max(range(len(want)), key=c.continuation_logprobs.__getitem__)
    computed = after["prompt_tokens_computed"] - before.get("prompt_tokens_computed", 0)
    total = sum(len(engine.tokenizer.encode(r.prompt + x)) for r in reqs for x in r.continuations)
    assert computed < 0.5 * total, (computed, total)  # the exemplar prefix was not recomputed per pair


def test_context_ending_on_a_block_boundary_is_scored_again_without_the_cache(engine):
    """A context of exactly a whole number of KV blocks, shared by two continuations: the second pair's
    cache hit covers the whole context, so its first continuation row was never computed; the backend
    must notice and score it again with the cache skipped."""
    block = engine.llm.llm_engine.vllm_config.cache_config.block_size
    tok = engine.tokenizer
    text = "Facts:"
    while len(tok.encode(text)) < 2 * block:
        text += " fact"
    assert len(tok.encode(text)) == 2 * block
    req = Request("edge", (), Sampling(max_tokens=1), continuations=(" yes", " no", " maybe"), prompt=text)
    engine.llm.reset_prefix_cache()
    [c] = engine.generate([req])
    ref = reference_sums(engine.llm, [(text, x) for x in req.continuations])
    assert c.error is None
    for got, exp in zip(c.continuation_logprobs, ref):
        assert math.isfinite(got) and abs(got - exp) <= 1e-3


@needs_data
def test_arc_easy_chosen_answers_agree_with_the_reference_on_100_items(engine, tmp_path):
    df = harness.run(["arc_easy"], ["zero_shot"], backend=engine, limit=100, data_dir=DATA, out=tmp_path / "r",
                     progress=False, write_report=False, cache=False)
    assert (df["format"] == "completion").all() and df["error"].isna().all()
    ref = reference_scores(engine.llm, reference_items("arc_easy", 100))
    rows = {r["example_id"]: r for r in df.to_dict("records")}
    assert len(rows) == len(ref) == 100
    for r in ref:
        assert rows[r["id"]]["answer"] == "ABCD"[r["acc_pick"]], r
        assert rows[r["id"]]["answer_norm"] == "ABCD"[r["norm_pick"]], r
