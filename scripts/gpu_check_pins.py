"""Check a `pip install --dry-run --report` of the GPU extras: vLLM must resolve to the tested release.

    python scripts/gpu_check_pins.py REPORT.json     # prints one line per package of interest; exit 1 on a bad pin

Reads the tested releases from harness/backends/engine_versions.py without importing the harness (this runs before
anything is installed). Fails when the report's vllm is not a tested release, when torch is a CPU build
(a machine-local wheel masked the CUDA one), or when vLLM is missing from the report.
"""
from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
SHOWN = ("vllm", "torch", "transformers", "xgrammar", "flashinfer-python", "ray")


def tested_versions() -> tuple[str, ...]:
    text = (ROOT / "harness" / "backends" / "engine_versions.py").read_text(encoding="utf-8")
    m = re.search(r"^TESTED_VLLM_VERSIONS[^=]*=\s*(\(.*?\))", text, re.M)
    if not m:
        sys.exit("gpu-check: TESTED_VLLM_VERSIONS not found in harness/backends/engine_versions.py")
    return tuple(ast.literal_eval(m.group(1)))


def resolved(report: dict) -> dict[str, tuple[str, str]]:
    """{name: (version, where from)} of everything the dry run would install."""
    out = {}
    for item in report.get("install", []):
        meta = item["metadata"]
        url = item.get("download_info", {}).get("url", "")
        parts = urlsplit(url)
        out[meta["name"].lower()] = (meta["version"], parts.netloc or unquote(parts.path) or "?")
    return out


def check(report: dict, tested: tuple[str, ...]) -> list[str]:
    """The problems found (empty: the pins resolve as they should)."""
    got = resolved(report)
    problems = []
    if "vllm" not in got:
        problems.append("vllm is not in the resolution")
    elif got["vllm"][0].split("+")[0] not in tested:
        problems.append(f"vllm resolves to {got['vllm'][0]}, not a tested release ({', '.join(tested)})")
    if "torch" in got and "+cpu" in got["torch"][0]:
        problems.append(f"torch resolves to the CPU build {got['torch'][0]} from {got['torch'][1]}: a local pip "
                        "configuration (find-links/constraints) masks PyPI's CUDA build")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    report = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    got = resolved(report)
    for name in SHOWN:
        if name in got:
            print(f"  {name:18s} {got[name][0]:14s} from {got[name][1]}")
    print(f"  ({len(got)} packages in all)")
    problems = check(report, tested_versions())
    for p in problems:
        print(f"gpu-check: FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
