"""docs/extending.md: every `python` block of the page runs, in order, in one namespace, in a scratch
folder. The blocks assert what they show (a task loads, a template renders, a strategy and a backend
run through harness.run, a scorer and a report section compute what they claim)."""
from __future__ import annotations

from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "extending.md"
SECTIONS = ("A task", "A template", "A strategy", "A backend", "A scorer", "A model judge", "A report section")


def blocks() -> list[tuple[str, str]]:
    """(section title, code) for every ```python block, in page order."""
    out, title, code = [], None, None
    for line in DOC.read_text(encoding="utf-8").splitlines(keepends=True):
        if code is not None:
            if line.rstrip() == "```":
                out.append((title, "".join(code)))
                code = None
            else:
                code.append(line)
        elif line.startswith("## "):
            title = line[3:].strip()
        elif line.rstrip() == "```python":
            code = []
    return out


def test_every_extension_point_has_an_example():
    assert [t for t, _ in blocks()] == list(SECTIONS)


def test_the_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "extending_example"}
    for title, code in blocks():
        try:
            exec(compile(code, f"docs/extending.md: {title}", "exec"), namespace)
        except Exception as exc:  # name the section that broke
            pytest.fail(f"the example of '{title}' failed: {type(exc).__name__}: {exc}")
    assert (tmp_path / "runs" / "capitals" / "report.html").is_file()
