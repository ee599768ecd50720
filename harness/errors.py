"""A small typed hierarchy of errors. The CLI prints any HarnessError as one line and exits 2."""
from __future__ import annotations

import difflib
from typing import Iterable


class HarnessError(Exception):
    """Base class. `where` names the file (or flag), `field` the field, `fix` what to do."""

    def __init__(self, message: str, *, where: str | None = None, field: str | None = None,
                 fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.field = field
        self.fix = fix

    def one_line(self) -> str:
        parts = []
        if self.where:
            parts.append(str(self.where))
        if self.field:
            parts.append(f"field '{self.field}'")
        head = ": ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return " ".join(text.split())


class ConfigError(HarnessError):
    """Bad task file, template, strategy spec, flag, data file, schema or price table."""


class TemplateError(ConfigError):
    """A template that fails to load or render."""


class DataError(ConfigError):
    """A data file that is missing, empty, unreadable or lacks a field."""


class BackendError(HarnessError):
    """A backend failed. `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False, **kw) -> None:
        super().__init__(message, **kw)
        self.retryable = retryable


class EngineStartError(BackendError):
    """The engine could not start (bad model path, not enough memory, missing package)."""


def suggest(name: str, valid: Iterable[str]) -> str:
    """'did you mean X?' text for an unknown key, or a list of valid keys."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'? valid: {', '.join(valid)}"
    return f"valid: {', '.join(valid)}"


def missing_extra(package: str, extra: str) -> EngineStartError:
    return EngineStartError(f"the package '{package}' is not installed",
                            fix=f"pip install 'harness[{extra}]' (see README)")
