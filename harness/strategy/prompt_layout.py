"""Prompt layout: how a task's template sections, the exemplars and the item become chat messages
(chat format) or one plain text (completion format). Used by the strategies (strategies.py)."""
from __future__ import annotations

import json
from typing import Any, Sequence

from ..records import Example, Message

COT_TRIGGER = "Let's think step by step."
FEWSHOT_DELIMITER = "\n\n"  # between the blocks of a completion-format prompt
TARGET_DELIMITER = " "  # between an input and its answer / continuation, in completion format


def _variables(example: Example, cot: bool) -> dict[str, Any]:
    return {**example.fields, "cot": cot}


def answer_text(ex: Example) -> str:
    """The gold answer as written out: the gold choice's text for multiple choice, else the gold."""
    gold = ex.gold if isinstance(ex.gold, str) else json.dumps(ex.gold)
    if ex.choices and gold in ex.labels:
        return ex.choices[ex.labels.index(gold)]
    return gold


def exemplar_answer(task, ex: Example, *, cot: bool) -> str:
    gold = ex.gold if isinstance(ex.gold, str) else json.dumps(ex.gold)
    rendered = task.template.render({**_variables(ex, cot), "answer": gold, "answer_text": answer_text(ex),
                                     "rationale": ex.rationale or ""}, sections=("answer",))["answer"]
    if rendered:
        return rendered
    if cot and ex.rationale:
        return f"{ex.rationale} The answer is {gold}."
    return f"The answer is {gold}."


_SHOT_BLOCKS: dict[tuple[int, int, bool, str], tuple[Any, Example, str]] = {}


def _shot_block(task, ex: Example, *, cot: bool, sep: str = "\n") -> str:
    """One exemplar as written in a few-shot prompt ("<input><sep><answer>": a newline in chat format,
    the target delimiter in completion format). Every example of a run repeats the same exemplars, so
    each block is rendered once: keyed by the identity of the task and exemplar objects, which the
    entry holds, so an id cannot be reused while it is cached."""
    key = (id(task), id(ex), cot, sep)
    hit = _SHOT_BLOCKS.get(key)
    if hit is not None and hit[0] is task and hit[1] is ex:
        return hit[2]
    ex_in = task.template.render(_variables(ex, cot), sections=("input",))["input"]
    text = f"{ex_in}{sep}{exemplar_answer(task, ex, cot=cot)}"
    if len(_SHOT_BLOCKS) >= 4096:
        _SHOT_BLOCKS.clear()
    _SHOT_BLOCKS[key] = (task, ex, text)
    return text


def build_messages(task, example: Example, shots: Sequence[Example], *, cot: bool,
                   as_chat: bool = False) -> tuple[Message, ...]:
    tpl = task.template
    head = tpl.render(_variables(example, cot), sections=("context", "instructions", "constraints", "input"))
    item = head["input"]
    trigger = f"\n\n{COT_TRIGGER}" if cot else ""
    shared = "\n\n".join(x for x in (head["instructions"], head["constraints"]) if x)
    msgs: list[Message] = []
    if as_chat:
        system = "\n\n".join(x for x in (head["context"], shared) if x)
        if system:
            msgs.append(Message("system", system))
        for ex in shots:
            ex_in = tpl.render(_variables(ex, cot), sections=("input",))["input"]
            msgs.append(Message("user", ex_in + trigger))
            msgs.append(Message("assistant", exemplar_answer(task, ex, cot=cot)))
        msgs.append(Message("user", item + trigger))
        return tuple(msgs)
    if head["context"]:
        msgs.append(Message("system", head["context"]))
    blocks = [shared] if shared else []
    blocks.extend(_shot_block(task, ex, cot=cot) for ex in shots)
    blocks.append(item + trigger)
    msgs.append(Message("user", "\n\n".join(blocks)))
    return tuple(msgs)


def build_completion_prompt(task, example: Example, shots: Sequence[Example], *, cot: bool) -> str:
    """Completion format: context, instructions, constraints, the exemplars and the item, as one plain
    text with a blank line between blocks (lm-evaluation-harness's fewshot delimiter); the exemplar
    prefix is byte-identical across the items of a run."""
    head = task.template.render(_variables(example, cot), sections=("context", "instructions", "constraints", "input"))
    trigger = f"\n\n{COT_TRIGGER}" if cot else ""
    blocks = [head[s] for s in ("context", "instructions", "constraints") if head[s]]
    blocks.extend(_shot_block(task, ex, cot=cot, sep=TARGET_DELIMITER) for ex in shots)
    blocks.append(head["input"] + trigger)
    return FEWSHOT_DELIMITER.join(blocks)
