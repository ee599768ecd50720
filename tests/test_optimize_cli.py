"""`harness optimize` on the command line: bad input is one line naming the flag and the fix, exit 2, before
any engine could start (docs/bad-input.md, "harness optimize"); a good command prints the verdict sentence
and the folder (a scripted backend stands in for the engine); integer ranges in grids."""
from __future__ import annotations

from pathlib import Path

import pytest

import harness.api
from harness.backends.scripted import ScriptedBackend
from harness.cli import main
from harness.errors import ConfigError
from harness.strategy.grid import expand_grid
from test_optimize import _answer

BASE = ["optimize", "--task", "larger_number", "--search", "few_shot:k={1,2}", "--quiet"]

# (id, argv after `harness optimize`, the text the line contains); docs/bad-input.md lists every id
CASES = [
    ("optimize-unknown-strategy", ["--task", "larger_number", "--search", "fewshot:k={1,2}"],
     "field '--search': unknown strategy 'fewshot'"),
    ("optimize-unknown-key", ["--task", "larger_number", "--search", "few_shot:kk=2"], "'--search (kk)'"),
    ("optimize-no-search", ["--task", "larger_number"], "field '--search'"),
    ("optimize-no-task", ["--search", "few_shot:k=1"], "field '--task'"),
    ("optimize-unknown-preset", BASE[1:] + ["--preset", "huge"], "invalid choice: 'huge'"),
    ("optimize-budget-too-small", BASE[1:] + ["--budget", "5"], "field '--budget': budget 5 requests is below"),
    ("optimize-empty-val", BASE[1:] + ["--val", "0.0001"], "field '--val': the val split of task larger_number is empty"),
    ("optimize-shares-over-one", BASE[1:] + ["--val", "0.7", "--test", "0.5"], "field '--val / --test'"),
    ("optimize-unknown-template", BASE[1:] + ["--template", "nosuch.j2"], "field '--template'"),
    ("optimize-template-twice", ["--task", "larger_number", "--search", "few_shot:k=1,template=larger.j2",
                                 "--template", "larger.j2"], "--search and --template together"),
    ("optimize-bad-baseline", BASE[1:] + ["--baseline", "zeroshot"], "field '--baseline'"),
    ("optimize-bad-range", ["--task", "larger_number", "--search", "few_shot:k=1,seed={3..1}"], "is empty"),
    ("optimize-resume-with-flags", ["--resume", "x", "--task", "larger_number"], "field '--resume'"),
    ("optimize-resume-not-optimize", ["--resume", "@tmp"], "no optimize.json"),
]


@pytest.fixture
def no_engine(monkeypatch):
    """Any case that got as far as building a backend fails the test (no engine may start here)."""
    def refuse(*a, **k):
        raise AssertionError("a backend was about to be built")
    monkeypatch.setattr(harness.api, "spec_backends", refuse)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys, no_engine):
    cid, argv, expect = case
    argv = [str(tmp_path) if a == "@tmp" else a for a in argv]
    code = main(["optimize", *argv, "--out", str(tmp_path / "out")] if "--resume" not in argv else ["optimize", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert expect in err, err
    assert not (tmp_path / "out").exists()           # nothing written


def test_the_docs_list_every_case():
    doc = (Path(__file__).parent.parent / "docs" / "bad-input.md").read_text()
    missing = [c[0] for c in CASES if f"`{c[0]}`" not in doc]
    assert not missing, f"add these cases to docs/bad-input.md: {missing}"


def test_a_good_command_prints_the_verdict_and_the_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(harness.api, "spec_backends",
                        lambda spec, given=None: lambda model, url: (ScriptedBackend(_answer), True))
    out = tmp_path / "opt"
    assert main(BASE + ["--template", "{larger.j2}", "--preset", "light", "--no-cache", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(out)
    assert any(x.startswith("optimize: few_shot:k=") and "expected from selection" in x for x in lines)
    assert (out / "optimize.csv").is_file() and (out / "winner.yaml").is_file() and (out / "optimize.md").is_file()


def test_integer_ranges_in_grids():
    assert expand_grid("few_shot:k=3,seed={0..3}") == [f"few_shot:k=3,seed={i}" for i in range(4)]
    assert expand_grid("few_shot:k={1,3},seed={2..2}") == ["few_shot:k=1,seed=2", "few_shot:k=3,seed=2"]
    with pytest.raises(ConfigError, match="two integers"):
        expand_grid("few_shot:seed={a..3}")
