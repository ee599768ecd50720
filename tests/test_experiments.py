"""Experiment files and the run spec (issue 21): one RunSpec from flags, keyword arguments or a file;
--resume reads it back; flags that would change it are refused next to --resume."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.errors import ConfigError
from harness.runs.defaults import DEFAULT_LIMIT, DEFAULT_SUITE
from harness.runs.experiment import load_experiment
from harness.runs.spec import RunSpec

ROOT = Path(__file__).resolve().parent.parent
YES = "The answer is yes."


def cli(*args, cwd=ROOT, timeout=120):
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_the_shipped_default_experiment_is_the_default_suite():
    spec, _ = load_experiment(ROOT / "experiments" / "default.yaml")
    assert spec.suite == {t: tuple(ss) for t, ss in DEFAULT_SUITE.items()}
    assert spec.limit == DEFAULT_LIMIT and spec.seed == 0


def test_the_default_experiment_and_a_bare_run_give_the_same_units(tmp_path):
    """`harness run experiments/default.yaml` and `harness run` (the README's first command): the same unit
    identities in the journal."""
    a = harness.run_spec(load_experiment(ROOT / "experiments" / "default.yaml")[0].model_copy(
        update={"out": str(tmp_path / "file"), "limit": 3}), backend=ScriptedBackend(lambda r: YES), progress=False)
    b = harness.run(backend=ScriptedBackend(lambda r: YES), limit=3, out=tmp_path / "bare", progress=False)
    ids = lambda d: sorted(json.loads(line)["u"]["id"] for line in (Path(d) / "journal.jsonl").read_text().splitlines())
    assert len(a) == len(b) > 0 and ids(a.attrs["run_dir"]) == ids(b.attrs["run_dir"])


def test_an_unknown_key_in_an_experiment_file_is_one_line_exit_2(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("tasks: [coin_flip]\nstrategy: [zero_shot]\n")
    r = cli("run", f, "--dry-run")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(f) in lines[0] and "strategy" in lines[0] and "strategies" in lines[0]


def test_a_bad_engine_option_in_an_experiment_file_names_the_key(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("tasks: [coin_flip]\nengine: {blok_size: 16}\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(f)
    line = err.value.one_line()
    assert str(f) in line and "engine.blok_size" in line and "block_size" in line.split("fix")[1]


def test_dry_run_of_an_experiment_prints_the_expanded_matrix_with_templates(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("# a comment\ntasks: [coin_flip]\nstrategies: [zero_shot, 'few_shot:k=2']\n"
                 "templates: [default, coin_flip_terse.j2]\nlimit: 4\n")
    r = cli("run", f, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "few_shot:k=2,template=coin_flip_terse.j2" in r.stdout and "zero_shot:template=coin_flip_terse.j2" in r.stdout
    assert "16 requests" in r.stdout  # 4 strategies x 4 items


def test_flags_next_to_the_file_override_it_and_run_json_says_which(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("tasks: [coin_flip]\nstrategies: [zero_shot]\nlimit: 4\n")
    r = cli("run", f, "--limit", "2", "--out", tmp_path / "r", "--backend", "openai", "--base-url",
            "http://127.0.0.1:9/v1", "--max-retries", "0", "--quiet")
    # no server at port 9: the run fails at its start, before writing; the dry run shows the override instead
    assert r.returncode == 2
    r = cli("run", f, "--limit", "2", "--dry-run")
    assert "2 requests" in r.stdout


def _run_folder(tmp_path, **kw) -> Path:
    out = tmp_path / "r"
    harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(lambda r: YES), limit=3, out=out,
                progress=False, **kw)
    return out


def test_run_json_stores_the_spec_and_resume_reads_it_back(tmp_path):
    out = _run_folder(tmp_path, cache=False, latency_probe=3, seed=4, margin=0.1)
    stored = json.loads((out / "run.json").read_text())["spec"]
    assert stored["cache"] is False and stored["latency_probe"] == 3 and stored["seed"] == 4 and stored["margin"] == 0.1
    from harness.runs.resume import resume_spec

    spec, names = resume_spec(out)
    assert names is None and spec.cache is False and spec.latency_probe == 3 and spec.seed == 4
    assert spec.limit == 3 and spec.tasks == ("coin_flip",)


@pytest.mark.parametrize("flag", [["--strategy", "few_shot:k=3"], ["--limit", "5"], ["--no-cache"],
                                  ["--latency-probe", "2"], ["--seed", "1"], ["--backend", "openai"]])
def test_a_flag_that_would_change_the_spec_is_refused_next_to_resume(tmp_path, flag):
    """Before: `--resume RUN --strategy few_shot:k=3 --limit 5` on a finished run ran 5 new items and
    rewrote run.json's config. Now one line, exit 2, the folder untouched."""
    out = _run_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    r = cli("run", "--resume", out, *flag)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "would change the run" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_an_openai_run_resumes_against_the_same_server(tmp_path):
    """Before: a --backend openai run resumed with the printed command silently started the offline engine.
    The spec keeps the backend and its base URL: the resume asks the same (here unreachable) server."""
    spec = RunSpec.build(tasks=["coin_flip"], strategies=["zero_shot"], limit=2, out=str(tmp_path / "r"),
                         backend="openai", backend_options={"base_url": ["http://127.0.0.1:9/v1"], "max_retries": 0})
    out = tmp_path / "r"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"run_id": "r", "config": {"task_files": [], "strategies": []},
                                              "spec": spec.record()}))
    from harness.runs.resume import resume_spec

    again, _ = resume_spec(out)
    assert again.backend == "openai" and again.backend_options["base_url"] == ["http://127.0.0.1:9/v1"]
    r = cli("run", "--resume", out)
    assert r.returncode == 2 and "127.0.0.1:9" in r.stderr and "vllm" not in r.stderr.lower(), r.stderr


def test_two_tasks_with_the_same_name_are_refused_naming_both_files(tmp_path):
    src = (ROOT / "tasks" / "coin_flip.yaml").read_text()
    (tmp_path / "a.yaml").write_text(src)
    (tmp_path / "b.yaml").write_text(src)
    for args in (["--dry-run"], ["--out", tmp_path / "r"]):
        r = cli("run", "--task", tmp_path / "a.yaml", "--task", tmp_path / "b.yaml", "--strategy", "zero_shot",
                "--limit", "2", *args)
        assert r.returncode == 2 and "a.yaml" in r.stderr and "b.yaml" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()


def test_dry_run_with_check_determinism_starts_nothing(tmp_path):
    r = cli("run", "--dry-run", "--check-determinism", "--task", "coin_flip", "--strategy", "zero_shot", "--limit", "2",
            "--model", tmp_path / "no-such-model")
    assert r.returncode == 0 and "nothing was started" in r.stdout, r.stderr


def test_harness_run_runs_several_models_into_one_folder(tmp_path):
    built = []

    def make(model, url):
        built.append(model)
        return ScriptedBackend(lambda r: YES, model_name=model)
    df = harness.run(["coin_flip"], ["zero_shot"], models=["a", "b"], backend=make, limit=3, out=tmp_path / "r",
                     progress=False)
    assert built == ["a", "b"] and sorted(df["model"].unique()) == ["a", "b"] and len(df) == 6
    assert [m["name"] for m in json.loads((tmp_path / "r" / "run.json").read_text())["config"]["models"]] == ["a", "b"]


def test_the_library_keywords_are_the_spec_fields():
    """harness.run(cache=False) is --no-cache: every RunSpec field is a keyword harness.run accepts."""
    import inspect

    params = inspect.signature(harness.run).parameters
    assert any(p.kind == p.VAR_KEYWORD for p in params.values())
    with pytest.raises(ConfigError, match="unknown key"):
        harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(lambda r: YES), no_cache=True)


def test_every_cli_command_is_a_library_call(tmp_path):
    out = _run_folder(tmp_path)
    paths = harness.report(out)
    assert any(str(p).endswith("report.md") for p in paths)
    assert "coin_flip" in set(harness.tasks()["name"])
    assert harness.compare([out, out], out=tmp_path / "cmp")
