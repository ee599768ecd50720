"""Export a harness prompt as a LangChain `ChatPromptTemplate` (template_format="jinja2").

    >>> from harness.task.tasks import load_task
    >>> tpl = to_chat_prompt_template(load_task("person_json"))
    >>> [m.type for m in tpl.format_messages(text="Ann Lee, 31, likes chess.")]
    ['system', 'human']

The messages have the harness's layout for the strategy (see `strategies.build_messages`): the parts
shared by all items (context, instructions, constraints, exemplars, the CoT trigger) are rendered
once and kept as literal text; the item's `input` section stays Jinja, so the template's variables
(the task's fields) are filled by LangChain. The harness renders with `trim_blocks`, `lstrip_blocks`
and strips each section; LangChain's Jinja environment does neither, so the exported section is the
source as the harness's lexer sees it (whitespace control already applied) inside
`{% filter trim %}`. A shared section that needs an item's variables is kept as Jinja the same way.

Exemplars are fixed at export time: those the strategy picks for an item outside the pool (for
selection=random or balanced, one draw). When the pool is the task's own items, the harness skips
the item being asked, so for an item among the exemplars the export differs from the harness.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from .errors import ConfigError, TemplateError
from .records import Example, Message
from .task.templates import Template

_MARK = "\x00harness-export-{}\x00"
_FLAG = "__harness_export__"
_DELIMS = ("{{", "{%", "{#")


def to_chat_prompt_template(task: Any, strategy_spec: str = "zero_shot") -> Any:
    """The task's prompt for `strategy_spec` as a ChatPromptTemplate with the item as Jinja."""
    from langchain_core.prompts import ChatPromptTemplate

    from .strategy.strategies import build_messages, parse_strategy

    strategy = parse_strategy(strategy_spec)
    if "template" in strategy.params:  # a template variant (docs/strategies.md)
        task = task.variant(strategy.params["template"])
    mode = strategy.answer_mode(task)
    cot = strategy.cot and mode == "generate"
    shots = strategy.exemplars(task, Example(id="__export__", fields={}, gold=None), run_seed=0)
    proxy = _export_task(task, cot=cot)
    item = Example(id="__export__", fields={_FLAG: True}, gold=None)
    messages = build_messages(proxy, item, shots, cot=cot, as_chat=bool(strategy.params.get("as_chat", False)))
    roles = {"system": "system", "user": "human", "assistant": "ai"}
    return ChatPromptTemplate.from_messages([(roles[m.role], to_jinja(proxy.template, m.content)) for m in messages],
                                            template_format="jinja2")


def messages_from_template(template: Any, fields: dict[str, Any]) -> tuple[Message, ...]:
    """Render an exported template back into harness Messages (for comparisons)."""
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    return tuple(Message(roles[m.type], m.content) for m in template.format_messages(**fields))


@dataclass(frozen=True)
class _ExportTemplate(Template):
    """The task's Template, except that the item's sections render as markers (their Jinja source
    replaces the markers afterwards, `to_jinja`); the exemplars render as usual."""

    cot: bool = False
    jinja: dict = field(default_factory=dict)

    @classmethod
    def of(cls, template: Template, cot: bool) -> "_ExportTemplate":
        return cls(**{f.name: getattr(template, f.name) for f in fields(Template)}, cot=cot)

    def render(self, variables: dict[str, Any], *, sections=("context", "instructions", "constraints", "input",
                                                              "answer")) -> dict[str, str]:
        if not variables.get(_FLAG):
            return super().render(variables, sections=sections)
        out = {}
        for s in sections:
            if s != "input":
                try:  # a shared section without item variables: render it once, as literal text
                    out[s] = super().render({"cot": self.cot}, sections=(s,))[s]
                    continue
                except TemplateError:
                    pass
            out[s] = _MARK.format(s)
            self.jinja[s] = section_jinja(self, s, cot=self.cot)
        return out


def _export_task(task: Any, *, cot: bool) -> Any:
    """The task with its template replaced by an _ExportTemplate (as Task.variant swaps a template in)."""
    proxy = replace(task)
    proxy.__dict__["template"] = _ExportTemplate.of(task.template, cot)
    for shared in ("examples", "pool"):
        if shared in task.__dict__:
            proxy.__dict__[shared] = task.__dict__[shared]
    return proxy


def to_jinja(template: _ExportTemplate, text: str) -> str:
    """Literal text with markers -> a Jinja template (literal parts escaped)."""
    out, rest = [], text
    while True:
        hits = [(rest.find(_MARK.format(s)), s) for s in template.jinja if _MARK.format(s) in rest]
        if not hits:
            out.append(_literal(rest))
            return "".join(out)
        pos, s = min(hits)
        out.append(_literal(rest[:pos]))
        out.append(template.jinja[s])
        rest = rest[pos + len(_MARK.format(s)):]


def _literal(text: str) -> str:
    if not any(d in text for d in _DELIMS):
        return text
    if "endraw" in text:
        raise ConfigError("cannot export text containing 'endraw' as a LangChain template", field="template",
                          fix="remove the word endraw from the prompt")
    return "{% raw %}" + text + "{% endraw %}"


def section_jinja(template: Any, section: str, *, cot: bool) -> str:
    """One block of a harness template as Jinja that LangChain's default environment renders exactly as
    the harness does: whitespace control applied by the harness's own lexer, then stripped by `trim`."""
    env = template._env
    source = template.path.read_text(encoding="utf-8")
    tokens = _block_tokens(env, source, section, name=template.name)
    body, uses_cot = [], False
    for _, kind, value in tokens:
        if kind in ("raw_begin", "raw_end"):
            continue
        if kind == "data":
            body.append(_literal(value))
            continue
        if kind == "name" and value in ("include", "import", "extends", "super"):
            raise ConfigError(f"section '{section}' of {template.name} uses '{value}', which cannot be exported",
                              where=str(template.path), field="template", fix="inline the included text")
        if kind == "name" and value == "cot":
            uses_cot = True
        if kind.endswith("_begin"):
            value = value.rstrip("-+")
        elif kind.endswith("_end"):
            value = value.strip().lstrip("-+")
        body.append(value)
    prefix = "{% set cot = " + ("true" if cot else "false") + " %}" if uses_cot else ""
    return prefix + "{% filter trim %}" + "".join(body) + "{% endfilter %}"


def _block_tokens(env: Any, source: str, section: str, *, name: str) -> list[tuple[int, str, str]]:
    """The lexer tokens inside `{% block section %}...{% endblock %}` (following `extends`)."""
    tokens = list(env.lex(source))
    names = [(i, t[2]) for i, t in enumerate(tokens) if t[1] == "name"]
    parent = None
    for k, (i, value) in enumerate(names):
        if value == "extends":
            strings = [t for t in tokens[i:] if t[1] == "string"]
            parent = strings[0][2][1:-1] if strings else None
        if value == "block" and k + 1 < len(names) and names[k + 1][1] == section:
            start = _after_block_end(tokens, names[k + 1][0])
            depth, j = 1, start
            while j < len(tokens):
                begin = _previous(tokens, j)
                if tokens[j][1] == "name" and tokens[j][2] in ("block", "endblock") and \
                        tokens[begin][1] == "block_begin":
                    depth += 1 if tokens[j][2] == "block" else -1
                    if depth == 0:
                        return tokens[start:begin]
                j += 1
            raise ConfigError(f"unclosed block '{section}' in {name}", field="template", fix="close the block")
    if parent is not None:
        parent_source, _, _ = env.loader.get_source(env, parent)
        return _block_tokens(env, parent_source, section, name=parent)
    return []


def _previous(tokens: list, j: int) -> int:
    """Index of the token before j, skipping whitespace."""
    i = j - 1
    while i > 0 and tokens[i][1] == "whitespace":
        i -= 1
    return i


def _after_block_end(tokens: list, i: int) -> int:
    while tokens[i][1] != "block_end":
        i += 1
    return i + 1
