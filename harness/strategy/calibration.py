"""Contextual calibration of label log-likelihoods (Zhao et al., "Calibrate Before Use: Improving Few-Shot
Performance of Language Models", ICML 2021), the strategy key `calibrate=true`.

A small model scoring the labels of a classification prompt often prefers one label whatever the input
(the bundled model says "positive" to every review). The paper estimates that bias from the same prompt
with a content-free input ("N/A" in every input field; the same exemplars) and divides it out:
q = softmax(diag(p_cf)^-1 p), whose argmax is argmax_i (log p(label_i | x) - log p(label_i | N/A)).
So a calibrated unit sends two log-likelihood requests, the item's and the content-free one; the second is
the same for every item of a cell, so the engine's prefix cache and the request cache answer it after
the first item, and the row's prompt tokens count both (the cost is honest)."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Sequence

from ..errors import ConfigError
from ..records import Completion, Example, Prediction

CONTENT_FREE = "N/A"  # the paper's first content-free input
SUFFIX = "|content-free"  # the content-free request's key: the item's key + this


def content_free(example: Example) -> Example:
    """The item with every input field replaced by the content-free text (same id, gold and labels)."""
    return replace(example, fields={k: CONTENT_FREE for k in example.fields})


def check_calibrate(task, spec: str, mode: str) -> None:
    if mode != "loglikelihood" or task.spec.answer_type != "label":
        raise ConfigError(f"calibrate=true scores a fixed label set by log-likelihood, and '{task.name}' "
                          f"has answer_type '{task.spec.answer_type}' with answer_mode={mode}", where=spec,
                          field="calibrate", fix="use calibrate=true with answer_mode=loglikelihood on a task "
                                                 "with labels, or drop it")


def reduce_calibrated(example: Example, item: Completion, free: Completion) -> Prediction:
    """argmax of log p(label | item) - log p(label | content-free); the output keeps all three vectors."""
    names = example.labels
    lp, cf = list(item.continuation_logprobs), list(free.continuation_logprobs)
    score = [a - b for a, b in zip(lp, cf)]
    best = max(range(len(score)), key=lambda i: score[i])  # ties go to the first label, as elsewhere

    def vec(v: Sequence[float]) -> dict:
        return {n: round(x, 4) for n, x in zip(names, v)}

    out = json.dumps({"calibrated": vec(score), "logprob": vec(lp), "content_free": vec(cf)})
    return Prediction(output=out, answer=names[best], parse_ok=True,
                      extra={"answer_norm": names[best], "extract_rule": "loglikelihood_calibrated"})
