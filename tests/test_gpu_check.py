"""scripts/gpu-check.sh: its dry run (prints the steps, resolves the GPU pins on PyPI: needs the network, which CI
has), and the report check it relies on (scripts/gpu_check_pins.py), which must fail on a wrong resolution."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.engine_versions import TESTED_VLLM_VERSIONS

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
PINS = ROOT / "scripts" / "gpu_check_pins.py"


def report(**versions: str) -> dict:
    """A pip --report document installing `versions` (name=version) from PyPI."""
    return {"install": [{"metadata": {"name": name.replace("_", "-"), "version": v},
                         "download_info": {"url": f"https://files.pythonhosted.org/packages/x/{name}-{v}.whl"}}
                        for name, v in versions.items()]}


def run_pins(tmp_path, doc: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(doc))
    return subprocess.run([sys.executable, str(PINS), str(path)], capture_output=True, text=True, timeout=60)


def test_pins_check_accepts_the_tested_release(tmp_path):
    proc = run_pins(tmp_path, report(vllm=TESTED_VLLM_VERSIONS[-1], torch="2.13.0"))
    assert proc.returncode == 0, proc.stderr
    assert f"vllm               {TESTED_VLLM_VERSIONS[-1]}" in proc.stdout


@pytest.mark.parametrize("versions,expect", [
    ({"vllm": "0.33.0", "torch": "2.14.0"}, "vllm resolves to 0.33.0"),           # the unpinned resolution
    ({"vllm": TESTED_VLLM_VERSIONS[-1], "torch": "2.13.0+cpu"}, "CPU build"),    # a local wheel masks PyPI
    ({"torch": "2.13.0"}, "vllm is not in the resolution"),
])
def test_pins_check_fails_on_a_wrong_resolution(tmp_path, versions, expect):
    proc = run_pins(tmp_path, report(**versions))
    assert proc.returncode == 1 and expect in proc.stderr, proc.stderr


def test_unknown_argument_is_refused():
    proc = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown argument '--frobnicate'" in proc.stderr


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=10).close()
        return True
    except OSError:
        return False


def test_dry_run_prints_the_steps_and_resolves_the_pins(tmp_path):
    # CI reaches PyPI (it installs from it), so an unreachable PyPI is a failure here, not a skip.
    assert _pypi_reachable(), "pypi.org:443 is unreachable: the dry run resolves the GPU pins on PyPI"
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for step in ("install", "guard", "engine", "parity", "bench", "signal"):
        assert f"  {step} " in out
    assert "--only parity --limit 200" in out and "bench --quick" in out
    got = {i["metadata"]["name"].lower(): i["metadata"]["version"]
           for i in json.loads((tmp_path / "pip-report.json").read_text())["install"]}
    assert got["vllm"] == TESTED_VLLM_VERSIONS[-1]
    assert "+cpu" not in got["torch"] and "ray" in got
    assert "dry run OK" in out
    assert not (tmp_path / "venv").exists()  # a dry run installs nothing
