"""Prompting strategies, as code: each has expand(task, example) -> [Request] and
reduce(task, example, completions) -> Prediction.

Specs on the command line look like `name:key=value,...`:

    zero_shot
    few_shot:k=5,selection=first|random|random_set|balanced,seed=0,order=given|shuffled,order_seed=0,as_chat=false
    cot                      zero-shot chain of thought ("Let's think step by step.")
    cot:k=8                  few-shot chain of thought (exemplars carry rationales)
    self_consistency:k=8,temperature=0.7,top_k=40,base=cot,shots=0

Every strategy also takes decoding keys (temperature, top_p, top_k, seed, max_tokens, stop, beam_width),
`guided=true|false`, `answer_mode=generate|choice|loglikelihood`, `calibrate=true` (contextual calibration of
label log-likelihoods: harness/strategy/calibration.py), `format=chat|completion` and
`template=NAME_OR_PATH` (a template variant). `stop` takes several strings separated by '|'. `seed` sets both the exemplar draw and the
sampling seed; `sampling_seed` sets the sampling seed alone. Value lists (`k={1,3}`) expand into a grid
before parsing (harness/strategy/grid.py). Every key, its default and an example: docs/strategies.md.

Formats. chat: messages rendered by the model's chat template. completion: the sections, the exemplars
and the item joined into one plain text (blocks separated by a blank line, an exemplar's answer after
the target delimiter " "), scored continuations are " " + choice: the standard multiple-choice protocol
(lm-evaluation-harness). The strategy's `format` wins over the task's, which wins over the run's default
(completion for a model without a chat template, else chat). The layout itself: harness/strategy/prompt_layout.py.

Prompt layout (prefix-cache friendly): the shared parts come first and are byte-identical across
examples (system: context; user: instructions, constraints, exemplars), then the item's input.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from ..errors import ConfigError, suggest
from ..task.exemplars import order_exemplars, select_exemplars, selection
from .calibration import SUFFIX as CF_SUFFIX, check_calibrate, content_free, reduce_calibrated
from ..scoring.extract import Extraction, extract_with_rule
from .prompt_layout import TARGET_DELIMITER, build_completion_prompt, build_messages
from ..records import Completion, Example, OutputType, Prediction, Request, Sample, Sampling
from .voting import _winner_rule, vote

ANSWER_MODES = ("generate", "choice", "loglikelihood")
FORMATS = ("chat", "completion")


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _pos_int(v: str) -> int:
    x = int(v)
    if x <= 0:
        raise ValueError("must be a positive integer")
    return x


def _nonneg_int(v: str) -> int:
    x = int(v)
    if x < 0:
        raise ValueError("must be 0 or more")
    return x


def _temperature(v: str) -> float:
    x = float(v)
    if not x >= 0 or math.isinf(x):
        raise ValueError("must be >= 0 (0 = greedy)")
    return x


def _top_p(v: str) -> float:
    x = float(v)
    if not 0 < x <= 1:
        raise ValueError("must be in (0, 1]")
    return x


def _choice(*values: str):
    def parse(v: str) -> str:
        if v not in values:
            raise ValueError(f"must be one of {', '.join(values)}")
        return v
    return parse


def _template_value(v: str) -> str:
    if not v.strip():
        raise ValueError("give a template file or a variant name")
    return v.strip()


DECODING_KEYS = {
    "temperature": _temperature, "top_p": _top_p, "top_k": _nonneg_int, "seed": int,
    "max_tokens": _pos_int, "stop": lambda v: tuple(s for s in v.split("|") if s), "beam_width": _nonneg_int,
    "guided": _bool, "answer_mode": _choice(*ANSWER_MODES), "greedy": _bool, "sampling_seed": int,
    "template": _template_value, "format": _choice(*FORMATS), "calibrate": _bool,
}
# keys of the strategies that show exemplars: which ones (selection, seed) and in what order
SELECTIONS = ("first", "random", "random_set", "balanced")
ORDER_KEYS = {"order": _choice("given", "shuffled"), "order_seed": int,
              "exemplars": lambda v: tuple(s for s in v.split("|") if s)}  # pinned ids, in order


@dataclass(frozen=True)
class Strategy:
    """Base: zero-shot. Subclasses override the exemplars, the CoT flag, or expand/reduce."""

    spec: str
    params: dict[str, Any] = field(default_factory=dict)

    # -- settings ---------------------------------------------------------------------------
    @property
    def cot(self) -> bool:
        return False

    @property
    def guided(self) -> bool:
        return bool(self.params.get("guided", False))

    def answer_mode(self, task) -> str:
        return self.params.get("answer_mode", task.spec.answer_mode)

    def prompt_format(self, task) -> str:
        """The strategy's `format`, else the task's, else the run's default (`Task.default_format`)."""
        return self.params.get("format") or task.spec.format or task.default_format

    def sampling(self, task, *, run_seed: int) -> Sampling:
        p = self.params
        temperature = 0.0 if p.get("greedy") else p.get("temperature", 0.0)
        default_max = task.spec.cot_max_tokens if self.cot else task.spec.max_tokens
        return Sampling(temperature=temperature, top_p=p.get("top_p", 1.0), top_k=p.get("top_k", 0),
                        seed=p.get("sampling_seed", p.get("seed", run_seed)),
                        max_tokens=p.get("max_tokens", default_max),
                        stop=tuple(p.get("stop", tuple(task.spec.stop))), n=1, beam_width=p.get("beam_width", 0))

    # -- expand -----------------------------------------------------------------------------
    def exemplars(self, task, example: Example, *, run_seed: int) -> list[Example]:
        """None beyond the task's own protocol (`num_fewshot`: a fixed set, the first of the pool)."""
        k = task.spec.num_fewshot
        return select_exemplars(task, example, k=k, selection="first", seed=run_seed) if k else []

    def render(self, task, example: Example, shots: list[Example], *, cot: bool) -> tuple[tuple, str | None]:
        """(messages, None) in the chat format, ((), prompt) in the completion format."""
        if self.prompt_format(task) == "completion":
            return (), build_completion_prompt(task, example, shots, cot=cot)
        return build_messages(task, example, shots, cot=cot, as_chat=bool(self.params.get("as_chat", False))), None

    def expand(self, task, example: Example, *, run_seed: int = 0) -> list[Request]:
        mode = self.answer_mode(task)
        if mode != "generate" and task.spec.answer_type not in ("choice", "label"):
            raise ConfigError(f"answer_mode={mode} needs a task with choices or labels, and "
                              f"'{task.name}' has answer_type '{task.spec.answer_type}'", where=self.spec,
                              field="answer_mode", fix="use answer_mode=generate on this task")
        shots = self.exemplars(task, example, run_seed=run_seed)
        cot = self.cot and mode == "generate"
        sampling = self.sampling(task, run_seed=run_seed)
        key = f"{task.name}|{self.spec}|{example.id}"
        messages, prompt = self.render(task, example, shots, cot=cot)
        if self.params.get("calibrate"):
            check_calibrate(task, self.spec, mode)
        if mode == "loglikelihood":
            conts = tuple(example.choices or example.labels)
            if prompt is not None:  # the standard protocol: the choice after the target delimiter
                conts = tuple(TARGET_DELIMITER + c for c in conts)
            reqs = [Request(key=key, messages=messages, sampling=replace(sampling, max_tokens=1), continuations=conts,
                            prompt=prompt)]
            if self.params.get("calibrate"):  # the same prompt, content-free (harness/strategy/calibration.py)
                fm, fp = self.render(task, content_free(example), shots, cot=False)
                reqs.append(replace(reqs[0], key=key + CF_SUFFIX, messages=fm, prompt=fp))
            return reqs
        output_type = None
        if mode == "choice":
            output_type = OutputType("choice", json.dumps(list(example.labels)))
        elif self.guided:
            output_type = task.output_type(example)
            if output_type is None:
                raise ConfigError("guided=true but the task declares no output_type", where=str(task.file),
                                  field="output_type", fix="add an output_type to the task, or use guided=false")
        return [Request(key=key, messages=messages, sampling=sampling, output_type=output_type, prompt=prompt)]

    # -- reduce -----------------------------------------------------------------------------
    def reduce(self, task, example: Example, completions: Sequence[Completion]) -> Prediction:
        c = completions[0]
        if c.error:
            return failed_prediction(c)
        if c.continuation_logprobs:
            if len(completions) > 1:  # calibrate=true: the second is the content-free prompt
                free = completions[1]
                return failed_prediction(free) if free.error else reduce_calibrated(example, c, free)
            return reduce_loglikelihood(task, example, c)
        text = c.texts[0] if c.texts else ""
        got = extract_answer(task, example, text)
        extra = {"extract_rule": got.rule}
        if task.spec.extraction == "both":
            strict = extract_answer(task, example, text, mode="strict")
            extra.update(answer_strict=strict.answer, extract_rule_strict=strict.rule)
        return Prediction(output=text, answer=got.answer, parse_ok=got.answer is not None, extra=extra)


def failed_prediction(c: Completion) -> Prediction:
    """A request that errored: no answer, and the error travels on so that scoring never calls it wrong."""
    return Prediction(output="", answer=None, parse_ok=False, extra={"error": c.error})


def extract_answer(task, example: Example, text: str, *, mode: str | None = None) -> Extraction:
    """The answer and the rule that fired, in the task's extraction mode (`both` answers flexible)."""
    if mode is None:
        mode = "strict" if task.spec.extraction == "strict" else "flexible"
    return extract_with_rule(task.spec.answer_type, text, labels=example.labels, choices=example.choices,
                             pattern=task.spec.extract_pattern, mode=mode)


def reduce_loglikelihood(task, example: Example, c: Completion) -> Prediction:
    """acc: argmax of summed log-probability; acc_norm: argmax of summed log-probability divided by the
    choice's length in characters, without the target delimiter (lm-evaluation-harness's `acc_norm`:
    `len(choice)` of the choice text). Ties go to the first choice, as numpy's argmax does."""
    names = example.labels
    conts = example.choices or example.labels
    lp = list(c.continuation_logprobs)
    best = max(range(len(lp)), key=lambda i: lp[i])
    norm = [lp[i] / max(1, len(conts[i])) for i in range(len(lp))]
    best_norm = max(range(len(norm)), key=lambda i: norm[i])
    return Prediction(output=json.dumps({n: round(v, 4) for n, v in zip(names, lp)}), answer=names[best],
                      parse_ok=True, extra={"answer_norm": names[best_norm], "extract_rule": "loglikelihood"})


@dataclass(frozen=True)
class FewShot(Strategy):
    default_k = 5

    @property
    def k(self) -> int:
        return int(self.params.get("k", self.default_k))

    def shots(self, task) -> int:
        """`k=`, else the task's protocol shot count (`num_fewshot`), else the strategy's default."""
        return int(self.params.get("k", task.spec.num_fewshot or self.default_k))

    def exemplars(self, task, example: Example, *, run_seed: int) -> list[Example]:
        shots = select_exemplars(task, example, k=self.shots(task), selection=selection(self.params),
                                 seed=self.params.get("seed", run_seed), need_rationale=self.cot,
                                 ids=self.params.get("exemplars", ()))
        return order_exemplars(shots, self.params)


@dataclass(frozen=True)
class ChainOfThought(FewShot):
    default_k = 0

    @property
    def cot(self) -> bool:
        return True


@dataclass(frozen=True)
class SelfConsistency(Strategy):
    """k samples from one request with n=k (the prompt is processed once), then a majority vote.

    Tie rule: among the tied answers, the one whose samples have the highest mean per-token
    log-probability wins (`tie_rule = "logprob"`); when log-probabilities are missing, the answer
    first reached in sample order wins (`tie_rule = "first"`)."""

    @property
    def cot(self) -> bool:
        return self.params.get("base", "cot") in ("cot", "few_shot_cot")

    def exemplars(self, task, example: Example, *, run_seed: int) -> list[Example]:
        shots = int(self.params.get("shots", task.spec.num_fewshot))
        if not shots:
            return []
        chosen = select_exemplars(task, example, k=shots, selection=selection(self.params),
                                  seed=self.params.get("seed", run_seed), need_rationale=self.cot,
                                  ids=self.params.get("exemplars", ()))
        return order_exemplars(chosen, self.params)

    def sampling(self, task, *, run_seed: int) -> Sampling:
        base = super().sampling(task, run_seed=run_seed)
        return replace(base, n=int(self.params.get("k", 8)), temperature=self.params.get("temperature", 0.7),
                       top_k=self.params.get("top_k", 40), logprobs=True)

    def reduce(self, task, example: Example, completions: Sequence[Completion]) -> Prediction:
        c = completions[0]
        if c.error:
            return failed_prediction(c)
        samples, rules, strict = [], [], []
        for i, text in enumerate(c.texts):
            got = extract_answer(task, example, text)
            ans = got.answer
            rules.append(got.rule)
            if task.spec.extraction == "both":
                strict.append(extract_answer(task, example, text, mode="strict"))
            toks = c.completion_tokens[i] if i < len(c.completion_tokens) else None
            lp = c.cumulative_logprobs[i] if i < len(c.cumulative_logprobs) else None
            fr = c.finish_reasons[i] if i < len(c.finish_reasons) else None
            samples.append(Sample(idx=i, output=text, answer=ans, parse_ok=ans is not None,
                                  completion_tokens=toks, cumulative_logprob=lp, finish_reason=fr))
        answer, votes, rule = vote(samples)
        winner_text = next((s.output for s in samples if s.answer == answer), samples[0].output if samples else "")
        agreement = (votes[answer] / sum(votes.values())) if answer is not None else 0.0
        extra = {"votes": json.dumps(votes, sort_keys=True), "agreement": agreement, "tie_rule": rule,
                 "extract_rule": _winner_rule(samples, rules, answer)}
        if strict:
            s_samples = [replace(s, answer=e.answer, parse_ok=e.answer is not None) for s, e in zip(samples, strict)]
            s_answer = vote(s_samples)[0]
            extra.update(answer_strict=s_answer, extract_rule_strict=_winner_rule(s_samples, [e.rule for e in strict],
                                                                                  s_answer))
        return Prediction(output=winner_text, answer=answer, parse_ok=answer is not None, samples=tuple(samples),
                          extra=extra)


# -- the one name -> constructor table ------------------------------------------------------
COMMON = set(DECODING_KEYS)
STRATEGIES: dict[str, tuple[type[Strategy], dict[str, Any]]] = {
    "zero_shot": (Strategy, {}),
    "few_shot": (FewShot, {"k": _nonneg_int, "selection": _choice(*SELECTIONS), "as_chat": _bool, **ORDER_KEYS}),
    "cot": (ChainOfThought, {"k": _nonneg_int, "selection": _choice(*SELECTIONS), "as_chat": _bool, **ORDER_KEYS}),
    "self_consistency": (SelfConsistency, {"k": _pos_int, "base": _choice("cot", "few_shot_cot", "zero_shot"),
                                           "shots": _nonneg_int, "selection": _choice(*SELECTIONS), **ORDER_KEYS}),
}


def parse_strategy(spec: str) -> Strategy:
    """'few_shot:k=4,selection=random' -> FewShot(params={'k': 4, 'selection': 'random'})"""
    text = spec.strip()
    name, _, rest = text.partition(":")
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}'", where=spec, field="--strategy",
                          fix=suggest(name, STRATEGIES))
    cls, own = STRATEGIES[name]
    parsers = {**DECODING_KEYS, **own}
    params: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"parameter '{item}' has no value", where=spec, field=key,
                              fix=f"write {key}=VALUE")
        if key not in parsers:
            raise ConfigError(f"unknown parameter '{key}' for strategy '{name}'", where=spec, field=key,
                              fix=suggest(key, parsers))
        if key in params:
            raise ConfigError(f"parameter '{key}' is given twice", where=spec, field=key,
                              fix=f"give {key} once")
        try:
            params[key] = parsers[key](value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bad value '{value}': {exc}", where=spec, field=key,
                              fix=f"give a valid {key}") from None
    if cls is SelfConsistency and params.get("temperature", 0.7) == 0:
        raise ConfigError("self-consistency needs sampling (temperature > 0)", where=spec, field="temperature",
                          fix="use temperature=0.7 (the default)")
    return cls(spec=text, params=params)

