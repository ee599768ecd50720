"""The harness's log-likelihood on the real engine against an independent raw-vLLM scorer.

The reference (`bench/parity.py`, no harness code) writes the standard prompts from the raw JSONL
files, tokenizes like lm-evaluation-harness and scores one plain `prompt_logprobs` request per
(item, choice) pair with the prefix cache skipped. The full-size check is `python -m bench --only
P6,PARITY`; these are its small versions (40 items).

These tests run their own engine in float32 with 32-token KV blocks (the CPU build's smallest). float32: in bfloat16 the plain
reference does not agree with itself to 1e-3 (the same pair scored alone and in a batch differs by up
to 0.45 nats on 5-shot ARC-Challenge, docs/engine.md), so a 1e-3 check of the method needs an
arithmetic that does not depend on the batch; on this CPU build float32 gives bitwise-equal sums.
32-token blocks: the 0-shot prompts (~45 tokens) then share whole blocks between the choices of an
item, so the prefix cache is really read. The module's engine is closed before the next module."""
from __future__ import annotations

import json
import math

import pytest

import harness
from bench.parity import reference_items, reference_scores, reference_sums
from harness.records import Request, Sampling
from shared_data import DATA

pytestmark = pytest.mark.engine
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
N_ARC = 40  # items; 100 took 198 s of the suite on 2 cores, the whole sets run in bench/parity.py
BLOCK = 32


@pytest.fixture(scope="module")
def exact_engine():
    from harness.backends.vllm import VLLMBackend

    backend = VLLMBackend(dtype="float32", block_size=BLOCK, use_tqdm=False)
    backend.llm
    yield backend
    backend.close()


@needs_data
def test_arc_easy_40_items_sums_and_answers_equal_the_plain_prompt_logprobs_reference(exact_engine, tmp_path):
    """harness.run(arc_easy, zero_shot) on 40 items (the whole test sets: bench/parity.py): every summed log-probability within 1e-3 of one
    plain prompt_logprobs request per pair, the same answer by acc and by acc_norm on all of them, and the
    shared prompt blocks really read from the prefix cache (fewer prompt tokens computed than sent)."""
    eng = exact_engine
    eng.llm.reset_prefix_cache()
    before = eng.stats()
    df = harness.run(["arc_easy"], ["zero_shot"], backend=eng, limit=N_ARC, data_dir=DATA, out=tmp_path / "r",
                     progress=False, cache=False)
    after = eng.stats()
    assert (df["format"] == "completion").all() and df["error"].isna().all()
    items = reference_items("arc_easy", N_ARC)
    eng.llm.reset_prefix_cache()
    ref = reference_scores(eng.llm, items)
    rows = {r["example_id"]: r for r in df.to_dict("records")}
    assert len(rows) == len(ref) == N_ARC
    labels = "ABCDE"
    for r in ref:
        row = rows[r["id"]]
        got = json.loads(row["output"])  # {label: summed log-probability, rounded to 1e-4}
        for i, want in enumerate(r["sums"]):
            assert math.isfinite(got[labels[i]]) and abs(got[labels[i]] - want) <= 1e-3, (r["id"], got, r["sums"])
        assert row["answer"] == labels[r["acc_pick"]], r
        assert row["answer_norm"] == labels[r["norm_pick"]], r
    tok = eng.tokenizer
    sent = sum(len(tok.encode(it["context"] + " " + ch)) for it in items for ch in it["choices"])
    computed = after["prompt_tokens_computed"] - before.get("prompt_tokens_computed", 0)
    # the most the prefix cache can save: per item, the whole 32-token blocks the choices' prompts share,
    # read again by every choice after the first (counted from the tokens, without the engine). Choices
    # scheduled in the same engine step may each compute a block before it is cached, so ask for half.
    can_save = sum((len(it["choices"]) - 1) * _shared_blocks(tok, it) * BLOCK for it in items)
    assert can_save > 0 and sent - computed >= 0.5 * can_save, (computed, sent, can_save)


def _shared_blocks(tok, item) -> int:
    """Whole KV blocks of the longest token prefix that all of an item's choice prompts share."""
    seqs = [tok.encode(item["context"] + " " + ch) for ch in item["choices"]]
    common = 0
    for column in zip(*seqs):
        if len(set(column)) != 1:
            break
        common += 1
    return min(common, min(len(x) for x in seqs) - 1) // BLOCK


def test_context_ending_on_a_block_boundary_is_scored_again_without_the_cache(exact_engine):
    """A context of exactly a whole number of KV blocks, shared by three continuations: a later pair's
    cache hit covers the whole context, so its first continuation row was never computed; the backend
    must notice and score it again with the cache skipped."""
    eng = exact_engine
    tok = eng.tokenizer
    text = "Facts:"
    while len(tok.encode(text)) < 2 * BLOCK:
        text += " fact"
    assert len(tok.encode(text)) == 2 * BLOCK
    req = Request("edge", (), Sampling(max_tokens=1), continuations=(" yes", " no", " maybe"), prompt=text)
    eng.llm.reset_prefix_cache()
    [c] = eng.generate([req])
    ref = reference_sums(eng.llm, [(text, x) for x in req.continuations])
    assert c.error is None
    for got, exp in zip(c.continuation_logprobs, ref):
        assert math.isfinite(got) and abs(got - exp) <= 1e-3, (got, exp)
