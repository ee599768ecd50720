"""Contextual calibration (`calibrate=true`, harness/strategy/calibration.py): the answer is the argmax of
log p(label | item) - log p(label | content-free prompt), computed here independently from the raw numbers
the scripted backend returns; the content-free request is the same prompt with "N/A" in the input; the row
pays for both prompts; bad combinations are refused. On the real engine: tests/test_default_suite.py."""
from __future__ import annotations

import json

import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.errors import ConfigError
from harness.records import Completion
from harness.runs.units import build_units
from harness.strategy.strategies import parse_strategy
from harness.task.tasks import load_task

BIAS = {"positive": -0.2, "negative": -1.9}  # the model's preference whatever the review says


def _logprobs(request) -> Completion:
    """A biased scorer: the content-free prompt gets the bias alone; an item gets the bias plus 1.0 for the
    label its opinion word says (so uncalibrated argmax is always 'positive', calibrated follows the text)."""
    text = request.prompt or " ".join(m.content for m in request.messages)
    review = text.rsplit("Review:", 1)[1]
    neg = any(w in review for w in ("terrible", "awful", "boring", "disappointing", "dreadful", "dull", "horrible",
                                    "poor", "annoying", "unpleasant"))
    pos = not neg and "N/A" not in review
    lps = []
    for c in request.continuations:
        label = c.strip()
        bonus = 1.0 if (label == "negative" and neg) or (label == "positive" and pos) else 0.0
        lps.append(BIAS[label] + bonus)
    return Completion(texts=(), prompt_tokens=len(text.split()), continuation_logprobs=tuple(lps), latency_s=0.0)


def test_calibrated_answers_equal_the_independent_argmax(tmp_path):
    plain = "zero_shot:answer_mode=loglikelihood"
    cal = "zero_shot:answer_mode=loglikelihood,calibrate=true"
    backend = ScriptedBackend(_logprobs)
    df = harness.run(["sentiment"], [plain, cal], backend=backend, limit=20, out=tmp_path / "r", progress=False,
                     write_report=False, cache=False, latency_probe=0)
    raw = df[df["strategy"] == plain].set_index("example_id")
    got = df[df["strategy"] == cal].set_index("example_id")
    assert raw["answer"].eq("positive").all()  # the bias alone decides the uncalibrated cell
    task = load_task("sentiment")
    units = {u.example.id: u for u in build_units([task], [parse_strategy(cal)], limit=20, seed=0)}
    for ex_id, row in got.iterrows():
        item, free = units[ex_id].requests
        a, b = _logprobs(item).continuation_logprobs, _logprobs(free).continuation_logprobs
        scores = {lab: x - y for lab, x, y in zip(task.examples[0].labels, a, b)}
        assert row["answer"] == max(scores, key=scores.get)
        out = json.loads(row["output"])
        assert out["content_free"] == {k: round(v, 4) for k, v in zip(task.examples[0].labels, b)}
        assert row["prompt_tokens"] == raw.loc[ex_id, "prompt_tokens"] + _logprobs(free).prompt_tokens
    assert got["answer"].nunique() == 2 and got["correct"].mean() > raw["correct"].mean()


def test_the_content_free_prompt_is_the_same_prompt_with_na_input():
    task = load_task("sentiment")
    for spec in ("few_shot:k=3,answer_mode=loglikelihood,calibrate=true",
                 "zero_shot:answer_mode=loglikelihood,calibrate=true,format=completion"):
        units = build_units([task], [parse_strategy(spec)], limit=3, seed=0)
        frees = set()
        for u in units:
            item, free = u.requests
            text = item.prompt or item.messages[-1].content
            free_text = free.prompt or free.messages[-1].content
            assert free_text == text.replace(u.example.fields["text"], "N/A")  # exemplars and layout kept
            assert free.continuations == item.continuations and free.key == item.key + "|content-free"
            frees.add(free_text)
        assert len(frees) == 1  # one content-free prompt per cell: the caches answer it after the first item


@pytest.mark.parametrize("spec,task,says", [
    ("zero_shot:calibrate=true", "sentiment", "calibrate=true scores a fixed label set"),  # generation
    ("zero_shot:calibrate=true,answer_mode=choice", "sentiment", "calibrate=true scores a fixed label set"),
    ("zero_shot:calibrate=maybe", "sentiment", "'maybe': expected true or false")])
def test_calibrate_outside_label_loglikelihood_is_refused(spec, task, says):
    with pytest.raises(ConfigError, match=says):
        build_units([load_task(task)], [parse_strategy(spec)], limit=1, seed=0)
