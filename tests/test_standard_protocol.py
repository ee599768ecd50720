"""Completion-format prompts and the standard-protocol tasks (no engine: the scripted backend and the
real tokenizer of the bundled model). The engine-side parity checks are in test_parity.py."""
from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.records import Completion, Example
from harness.runs.units import default_format
from harness.scoring.scoring import score
from harness.strategy.strategies import parse_strategy, reduce_loglikelihood
from harness.task.tasks import load_task
from shared_data import DATA

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")


def task(name):
    return load_task(name, data_dir=DATA)


def request(name, spec="zero_shot", i=0, default_format="chat"):
    t = replace(task(name), default_format=default_format)
    return parse_strategy(spec).expand(t, t.examples[i])[0]


def first_rows(path, n):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(next(fh)) for _ in range(n)]


def test_arc_easy_is_the_standard_protocol():
    row = first_rows(DATA / "arc_easy" / "test.jsonl", 1)[0]
    r = request("arc_easy")
    assert r.format == "completion" and r.messages == ()
    assert r.prompt == f"Question: {row['question']}\nAnswer:"
    assert r.continuations == tuple(" " + c for c in row["choices"])


def test_piqa_and_boolq_prompts_and_continuations():
    piqa = first_rows(DATA / "piqa" / "validation.jsonl", 2)[1]
    t = task("piqa")
    ex = t.examples[1]
    assert ex.choices == (piqa["sol1"], piqa["sol2"]) and ex.gold == "AB"[piqa["label"]]
    r = parse_strategy("zero_shot").expand(t, ex)[0]
    assert r.prompt == f"Question: {piqa['goal']}\nAnswer:"
    assert r.continuations == (" " + piqa["sol1"], " " + piqa["sol2"])

    boolq = first_rows(DATA / "boolq" / "validation.jsonl", 1)[0]
    r = request("boolq")
    question = boolq["question"].rstrip("?")
    assert r.prompt == f"{boolq['passage']}\nQuestion: {question}?\nAnswer:"
    assert "??" not in r.prompt and r.continuations == (" no", " yes")


def test_arc_challenge_25shot_shares_one_exemplar_set_and_never_shows_the_item():
    t = task("arc_challenge_25shot")
    strat = parse_strategy("zero_shot")
    pool_ids = [e.id for e in t.pool]
    assert len(pool_ids) == 26
    outside = [e for e in t.examples if e.id not in pool_ids][:5]
    prompts = [strat.expand(t, e)[0].prompt for e in outside]
    prefixes = {p.rsplit("\n\n", 1)[0] for p in prompts}
    assert len(prefixes) == 1  # one fixed exemplar set, byte-identical
    prefix = prefixes.pop()
    assert prefix.count("Question: ") == 25 and prefix.count("\nAnswer: ") == 25
    first = t.pool[0]
    gold_text = first.choices[first.labels.index(first.gold)]
    assert prefix.startswith(f"Question: {first.fields['question']}\nAnswer: {gold_text}\n\n")
    for ex in t.examples:  # the 26 pool items: never their own exemplar, still 25 shots
        if ex.id in pool_ids:
            p = strat.expand(t, ex)[0].prompt
            shots = p.rsplit("\n\n", 1)[0]
            assert f"Question: {ex.fields['question']}\n" not in shots and shots.count("Question: ") == 25


def test_gsm8k_cot_8shot_prompt_and_extraction():
    wei = [json.loads(line) for line in open(DATA / "gsm8k" / "cot_exemplars_wei2022.jsonl", encoding="utf-8")]
    r = request("gsm8k_cot_8shot")
    blocks = r.prompt.split("\n\n")
    assert len(blocks) == 9 and r.sampling.temperature == 0.0 and r.sampling.max_tokens == 256
    for block, w in zip(blocks, wei):
        assert block == f"Q: {w['question']}\nA: {w['rationale']} The answer is {w['answer']}."
    assert blocks[-1].startswith("Q: ") and blocks[-1].endswith("\nA:")
    assert "Q:" in r.sampling.stop
    t = task("gsm8k_cot_8shot")
    ex = t.examples[0]
    out = " She sells 16 - 3 - 4 = 9 eggs. The answer is 1,8. wait The answer is 7."
    pred = parse_strategy("zero_shot").reduce(t, ex, [Completion(texts=(out,))])
    assert pred.answer == "18"  # the first "The answer is", commas removed (lm-eval's strict match)
    assert score(t, ex, pred)["correct"] is True
    # strict match: without "The answer is N" there is no answer, even when the last number is the gold
    # (lm-eval's gsm8k_cot strict-match gives "[invalid]"; the flexible fallback would have read 18)
    pred = parse_strategy("zero_shot").reduce(t, ex, [Completion(texts=(" 16 - 3 - 4 = 9 and 9 * 2 = 18",))])
    assert pred.answer is None and score(t, ex, pred)["correct"] is False
    # nor with another explicit statement ("#### 18"): strict-match is the one regex
    pred = parse_strategy("zero_shot").reduce(t, ex, [Completion(texts=(" 9 * 2 = 18.\n#### 18",))])
    assert pred.answer is None
    # the regex is case-sensitive, as lm-eval's is: "So the answer is 2 x 2 = 4" is not a statement
    # (a real SmolLM2 output on GSM8K; the harness read 2 where lm-eval reads 4)
    out = " 1/2 x 2 = 2 bolts of white fiber. So the answer is 2 x 2 = 4 bolts of white fiber. The answer is 4.\n\n"
    assert parse_strategy("zero_shot").reduce(t, ex, [Completion(texts=(out,))]).answer == "4"


def test_old_chat_tasks_keep_their_behaviour_under_new_names():
    r = request("arc_easy_chat")
    assert r.format == "chat" and r.prompt is None and "A. " in r.messages[-1].content
    assert request("boolq_chat").format == "chat"
    assert request("gsm8k").format == "chat"


def test_format_precedence_strategy_over_task_over_default():
    assert request("arc_easy", "zero_shot:format=chat").format == "chat"
    assert request("coin_flip").format == "chat"
    assert request("coin_flip", default_format="completion").format == "completion"
    assert request("coin_flip", "zero_shot:format=completion").format == "completion"
    r = request("coin_flip", "few_shot:k=2,format=completion")
    blocks = r.prompt.split("\n\n")
    # context, instructions, constraints, 2 exemplars ("input answer"), the item: one plain text
    assert len(blocks) == 6 and blocks[3].startswith("Q: ") and "\nA: The answer is" not in blocks[3]
    assert " A: The answer is " in blocks[3]


def test_model_without_chat_template_defaults_to_completion(tmp_path):
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<bos>"}))
    chat = tmp_path / "chat-model"
    chat.mkdir()
    (chat / "config.json").write_text("{}")
    (chat / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert default_format(str(base)) == "completion"
    assert default_format(str(chat)) == "chat"
    assert default_format(None, ScriptedBackend(str, model_name=str(base))) == "completion"
    assert default_format(None, ScriptedBackend(str, model_name="remote-model")) == "chat"


def test_acc_norm_divides_by_choice_characters_without_the_space():
    """lm-evaluation-harness: acc_norm = argmax(logprob / len(choice)), the choice text without the
    target delimiter, in characters (not bytes, not tokens)."""
    t = task("arc_easy")
    ex = Example(id="x", fields={"question": "q"}, gold="B", choices=("ab", "abcdé"), labels=("A", "B"))
    # per char without space: -2/2=-1.0 vs -5.5/5=-1.1 -> A; with the space: -2/3 vs -5.5/6 -> A;
    # per byte: -2/2 vs -5.5/6=-0.92 -> B. acc (sum) -> A.
    pred = reduce_loglikelihood(t, ex, Completion(texts=(), continuation_logprobs=(-2.0, -5.5)))
    assert pred.answer == "A" and pred.extra["answer_norm"] == "A"
    # per char without space: -3/2=-1.5 vs -7/5=-1.4 -> B; with the space: -1.0 vs -1.17 -> A
    pred = reduce_loglikelihood(t, ex, Completion(texts=(), continuation_logprobs=(-3.0, -7.0)))
    assert pred.answer == "A" and pred.extra["answer_norm"] == "B"


def test_run_records_the_format_on_rows_run_json_and_report(tmp_path):
    def fn(req):
        if req.continuations:
            return Completion(texts=(), prompt_tokens=5, continuation_logprobs=tuple(
                -float(len(c)) for c in req.continuations), continuation_tokens=(1,) * len(req.continuations))
        return "The answer is yes."
    df = harness.run(["arc_easy", "coin_flip"], ["zero_shot"], backend=ScriptedBackend(fn), limit=3,
                     data_dir=DATA, out=tmp_path / "r", progress=False, cache=False, report=True)
    fmt = dict(zip(df["task"], df["format"]))
    assert fmt == {"arc_easy": "completion", "coin_flip": "chat"}
    prompt = json.loads(df[df["task"] == "arc_easy"]["prompt"].iloc[0])
    assert prompt[0]["role"] == "completion" and prompt[0]["content"].startswith("Question: ")
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert meta["format"] == {"default": "chat", "used": ["chat", "completion"]}
    summary = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert dict(zip(summary["task"], summary["format"])) == fmt
    assert summary.loc[summary["task"] == "arc_easy", "accuracy_norm"].notna().all()
    report = (tmp_path / "r" / "report.html").read_text()
    assert "<th>format</th>" in report.replace(" ", "") or ">format<" in report


def test_encode_pair_moves_trailing_space_and_splits_the_whole_encoding():
    from transformers import AutoTokenizer

    from harness.backends.loglik import encode_pair
    from harness.backends.models import bundled_model_dir

    tok = AutoTokenizer.from_pretrained(str(bundled_model_dir()))
    ctx, cont = encode_pair(tok, "Question: Is it?\nAnswer:", " yes")
    assert ctx == tok.encode("Question: Is it?\nAnswer:") and tok.decode(cont) == " yes"
    assert encode_pair(tok, "Question: Is it?\nAnswer: ", "yes") == (ctx, cont)
    whole = tok.encode("Question: Is it?\nAnswer: yes")
    assert ctx + cont == whole
