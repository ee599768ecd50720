"""The `judge:` block of a task file: which model grades the outputs, with which rubric and schema.

```yaml
scorer: judge                  # the scorer table's model-graded entry (harness/scoring/judge.py)
scorer_params: {rule: contains} # optional: also score with a rule (gold tasks): rule_correct, q0 / q1 / kappa
judge:
  rubric: explain_rubric.j2    # a template in prompts/ (sandboxed, strict Jinja; blocks: context, instructions,
                               # constraints, input). Variables: the task's fields, output, answer, gold
  model: bundled               # bundled | a local model folder | NAME@URL (an OpenAI-compatible server) | run
                               # (the model being evaluated); a list is a panel (majority vote)
  threshold: 4                 # optional: pass = score >= threshold (else the verdict's own `pass`)
  schema: null                 # optional: a JSON schema (inline or a file) for the verdict; default
                               # {reasoning: str <= 200 chars, score: int 1..5, pass: bool}
  guided: true                 # decode the verdict with the schema as a constraint (every verdict parses)
  max_tokens: 256
  temperature: 0.0
  mode: rubric                 # rubric | pairwise (compare two strategies' outputs, both orders)
  calibration: {path: labels.jsonl}  # optional: hand-labelled answers (fields, gold, output, label) ->
                               # q0, q1 and the bias-corrected accuracy of every strategy
```
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class JudgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    rubric: str
    model: str | list[str] = "bundled"
    threshold: int | None = None
    schema_: dict[str, Any] | str | None = Field(None, alias="schema")  # (BaseModel has a .schema)
    guided: bool = True
    max_tokens: int = 256
    temperature: float = 0.0
    mode: Literal["rubric", "pairwise"] = "rubric"
    # hand-labelled items for a task without a rule: a data source like `source:` whose rows hold the
    # task's fields, its gold, `output` (an answer) and `label` (true when that answer is right)
    calibration: dict[str, Any] | None = None

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model,) if isinstance(self.model, str) else tuple(self.model)

    @field_validator("model")
    @classmethod
    def some_model(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("give at least one judge model")
        if any(not str(m).strip() for m in ([v] if isinstance(v, str) else v)):
            raise ValueError("a judge model is empty: use bundled, a model folder, NAME@URL or run")
        return v

    @field_validator("max_tokens")
    @classmethod
    def positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be a positive number of tokens")
        return v

    @field_validator("temperature")
    @classmethod
    def temp(cls, v: float) -> float:
        if not 0.0 <= v <= 2.0:
            raise ValueError("must be between 0 and 2")
        return v
