"""Prompt templates: sandboxed, strict Jinja with four sections.

A template file in `prompts/` defines up to five blocks:

    {% block context %}...{% endblock %}        -> the system message
    {% block instructions %}...{% endblock %}   -> shared, ahead of the input
    {% block constraints %}...{% endblock %}    -> shared, ahead of the input
    {% block input %}...{% endblock %}          -> the item being asked
    {% block answer %}...{% endblock %}         -> how an exemplar's answer is written (few-shot)

Rendering uses Jinja's sandbox with StrictUndefined: a missing variable is an error naming the
template and the variable, never an empty string. Includes cannot leave the template folders.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..errors import TemplateError

SECTIONS = ("context", "instructions", "constraints", "input", "answer")


class SafeLoader(jinja2.BaseLoader):
    """Loads templates by name from a list of folders. Refuses absolute names, `..`,
    and symbolic links (in the name's path or pointing out of the folder)."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = [Path(f).resolve() for f in folders]

    def get_source(self, environment, template):  # noqa: D401 - jinja API
        path = resolve_template(template, self.folders)
        source = path.read_text(encoding="utf-8")
        mtime = path.stat().st_mtime
        return source, str(path), lambda: path.exists() and path.stat().st_mtime == mtime


def resolve_template(name: str, folders: Sequence[Path]) -> Path:
    if not name or os.path.isabs(name) or name.startswith(("/", "\\")):
        raise TemplateError(f"absolute template path '{name}' is refused", where=name,
                            fix="name a template inside prompts/")
    parts = Path(name).parts
    if any(p in ("..", "") for p in parts):
        raise TemplateError(f"template name '{name}' leaves its folder", where=name,
                            fix="name a template inside prompts/ without '..'")
    for folder in folders:
        candidate = folder.joinpath(*parts)
        # check every component for symlinks
        cur = folder
        linked = False
        for p in parts:
            cur = cur / p
            if cur.is_symlink():
                linked = True
                break
        if linked:
            raise TemplateError(f"template '{name}' is a symbolic link, which is refused", where=str(candidate),
                                fix="copy the template into prompts/ instead of linking it")
        if candidate.is_file():
            return candidate
    raise jinja2.TemplateNotFound(name)


def make_environment(folders: Sequence[Path]) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=SafeLoader(folders), undefined=StrictUndefined, trim_blocks=True,
        lstrip_blocks=True, keep_trailing_newline=False, autoescape=False)
    # No helper objects in the namespace: cycler/joiner/namespace/range are classic escape gadgets.
    env.globals.clear()
    return env


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    hash: str
    _jinja: Any
    _env: Any

    def render(self, variables: Mapping[str, Any], *, sections: Sequence[str] = SECTIONS) -> dict[str, str]:
        """Render the named blocks with `variables`; a block the template lacks renders as ''."""
        out: dict[str, str] = {}
        try:
            ctx = self._jinja.new_context(dict(variables))
            for s in sections:
                fn = self._jinja.blocks.get(s)
                out[s] = "".join(fn(ctx)).strip() if fn else ""
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"undefined variable: {exc.message}", where=str(self.path),
                                field=_undefined_name(exc),
                                fix="map the variable in the task's 'fields' or remove it from the template") from None
        except SecurityError as exc:
            raise TemplateError(f"unsafe template operation refused by the sandbox: {exc}", where=str(self.path),
                                fix="templates may only format their variables") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"render error: {exc}", where=str(self.path), fix="fix the template") from None
        except Exception as exc:  # 1/0, 'a' + 1 in the template: name the template's own line
            line = _template_line(exc, self.path, self._jinja)
            raise TemplateError(f"render error{f' at line {line}' if line else ''}: {type(exc).__name__}: {exc}",
                                where=str(self.path), fix="fix the expression in the template") from None
        return out


def _template_line(exc: BaseException, path: Path, jt: Any) -> int | None:
    """The template line an exception was raised on: the compiled code's line of the last frame in the
    template, mapped back through Jinja's debug info."""
    import traceback

    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path) and frame.lineno:
            line = jt.get_corresponding_lineno(frame.lineno)
    return line


def _undefined_name(exc: jinja2.UndefinedError) -> str | None:
    msg = exc.message or ""
    if "'" in msg:
        return msg.split("'")[1]
    return None


def load_template(name: str, folders: Sequence[Path]) -> Template:
    env = make_environment(folders)
    try:
        jt = env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template '{exc.name}' not found in {', '.join(str(f) for f in folders)}",
                            where=name, field="template", fix="check the template name in the task file") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error at line {exc.lineno}: {exc.message}", where=exc.filename or name,
                            fix="fix the Jinja syntax") from None
    path = Path(jt.filename)
    unknown = sorted(set(jt.blocks) - set(SECTIONS))
    if unknown or "input" not in jt.blocks:
        import difflib

        bad = unknown[0] if unknown else None
        close = difflib.get_close_matches(bad, SECTIONS, n=1) if bad else []
        what = f"unknown block '{bad}'" + (f" (did you mean '{close[0]}'?)" if close else "") if bad else \
            "no 'input' block: the item's question would never be sent"
        raise TemplateError(what, where=str(path), field="block",
                            fix="define {% block input %}...{% endblock %}; blocks: " + ", ".join(SECTIONS))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Template(name=name, path=path, hash=digest, _jinja=jt, _env=env)
