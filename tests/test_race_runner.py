"""The race through the runner (harness/runs/race.py) on a scripted backend: it runs only what the
race asks for, writes race.csv / race.json, agrees with the pure race on the complete matrix, and an
interrupted race resumes to the same decisions. (The real-engine checks are in docs/race.md.)"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from skilled_answers import skilled_answer
import harness
from harness.api import race_spec
from harness.backends.scripted import ScriptedBackend
from harness.runs.spec import RunSpec
from harness.stats.race import race, race_order

STRATEGIES = ["zero_shot", "few_shot:k=1", "few_shot:k=2", "few_shot:k=3"]
_answer = skilled_answer  # harness-free scripted answers (tests/skilled_answers.py)


class _Stop(ScriptedBackend):
    """Stops the run (as Ctrl-C / SIGTERM does) at its `stop_at`-th engine call."""

    def __init__(self, stop_at: int):
        super().__init__(_answer)
        self.stop_at = stop_at

    def generate(self, requests):
        if len(self.calls) + 1 == self.stop_at:
            self.calls.append(len(requests))
            raise KeyboardInterrupt
        return super().generate(requests)


def _race(out, backend, strategies=STRATEGIES):
    spec = RunSpec.build(tasks=("larger_number",), strategies=tuple(strategies), limit=160, cache=False, out=str(out))
    return race_spec(spec, {"batch": 16}, backend=backend, progress=False)


def test_the_race_runs_only_what_it_needs_and_matches_the_pure_race(tmp_path):
    preds = _race(tmp_path / "race", ScriptedBackend(_answer))
    decision = preds.attrs["race"]["larger_number"]
    assert decision["status"] in ("winner", "tie") and decision["best"] in ("few_shot:k=2", "few_shot:k=3")
    assert {"zero_shot", "few_shot:k=1"} <= set(decision["eliminated"])
    assert len(preds) == decision["evaluations"] < 4 * 160            # eliminated cells stopped running
    looks = pd.read_csv(tmp_path / "race" / "race.csv")
    saved = json.loads((tmp_path / "race" / "race.json").read_text())
    assert saved["tasks"]["larger_number"]["sentence"] == decision["sentence"]
    # the pure race on the complete matrix (every unit run) takes the same decisions
    full = harness.run(["larger_number"], STRATEGIES, backend=ScriptedBackend(_answer), out=tmp_path / "full",
                       limit=160, progress=False, latency_calibration=0, latency_probe=0, cache=False)
    table = full.pivot_table(index="example_id", columns="strategy", values="correct", aggfunc="first")
    items = list(full[full.strategy == "zero_shot"]["example_id"])
    pure = race(table[STRATEGIES].astype(float), order=race_order(items, 0), batch=16)
    assert (pure.status, pure.winner, pure.eliminated) == (decision["status"], decision["winner"],
                                                          decision["eliminated"])
    assert looks["look"].max() == pure.looks["look"].max()
    assert looks[["items", "accuracy", "status"]].reset_index(drop=True).equals(
        pure.looks[["items", "accuracy", "status"]].reset_index(drop=True))


def test_an_interrupted_race_resumes_to_the_same_decisions(tmp_path):
    whole = _race(tmp_path / "whole", ScriptedBackend(_answer)).attrs["race"]
    with pytest.raises(KeyboardInterrupt):
        _race(tmp_path / "cut", _Stop(stop_at=7))
    assert (tmp_path / "cut" / "race.csv").is_file()
    resumed = _race(tmp_path / "cut", ScriptedBackend(_answer)).attrs["race"]
    assert resumed == whole
    assert pd.read_csv(tmp_path / "cut" / "race.csv").equals(pd.read_csv(tmp_path / "whole" / "race.csv"))


def test_a_race_needs_two_cells(tmp_path):
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="two or more"):
        _race(tmp_path / "r", ScriptedBackend(_answer), strategies=["zero_shot"])


def test_the_report_of_a_raced_run_has_the_race_section(tmp_path):
    from harness.reports.report import write_report

    _race(tmp_path / "r", ScriptedBackend(_answer))
    html, md = write_report(tmp_path / "r")[:2]
    text = md.read_text()
    assert "## Race" in text and "eliminated after" in text and '<section id="race">' in html.read_text()
    verdict = text.split("## Verdict")[1].split("##")[0].strip().splitlines()
    assert verdict[0].startswith("- race on larger_number: ") and "eliminated after" in verdict[0]
    assert all(x.startswith("- Fixed-n reading, approximate") for x in verdict[1:] if x.startswith("- ")), verdict
    assert (tmp_path / "r" / "race.png").stat().st_size > 1000


def test_a_resumed_race_keeps_the_tie_rule_it_was_started_with(tmp_path):
    """race.json records the tie rule; one written before the rule was recorded ("pairs" was the only one)
    resumes with "pairs", so a resume never changes the decisions of the race it resumes."""
    spec = dict(tasks=("larger_number",), strategies=tuple(STRATEGIES), limit=160, cache=False)
    whole = {tie: race_spec(RunSpec.build(**spec, out=str(tmp_path / tie)), {"batch": 16, "tie": tie},
                            backend=ScriptedBackend(_answer), progress=False).attrs["race"]["larger_number"]
             for tie in ("leader", "pairs")}
    assert whole["leader"]["items"] < whole["pairs"]["items"]       # the rules differ on this race
    with pytest.raises(KeyboardInterrupt):
        _race(tmp_path / "old", _Stop(stop_at=5))
    meta = tmp_path / "old" / "race.json"
    saved = json.loads(meta.read_text())
    assert saved["settings"]["tie"] == "leader"
    del saved["settings"]["tie"]                                    # as an older harness wrote it
    meta.write_text(json.dumps(saved))
    resumed = _race(tmp_path / "old", ScriptedBackend(_answer)).attrs["race"]["larger_number"]
    assert resumed == whole["pairs"]
    assert json.loads(meta.read_text())["settings"]["tie"] == "pairs"


@pytest.mark.parametrize("tie", ["leader", "pairs"])
def test_the_command_line_races_with_the_tie_rule_asked_for(tmp_path, capsys, monkeypatch, tie):
    from harness.cli import main

    monkeypatch.setattr(harness.api, "spec_backends",
                        lambda spec, given=None: lambda model, url: (ScriptedBackend(_answer), True))
    argv = ["run", "--task", "larger_number", *[x for s in STRATEGIES for x in ("--strategy", s)], "--limit", "160",
            "--race", "--no-cache", "--no-report", "--quiet", "--out", str(tmp_path / "r")]
    assert main(argv + ([] if tie == "leader" else ["--race-tie", "pairs"])) == 0
    saved = json.loads((tmp_path / "r" / "race.json").read_text())
    assert saved["settings"]["tie"] == tie
    out = capsys.readouterr().out.splitlines()
    # the race's decision first, then the fixed-n verdict marked approximate, then the run folder
    first = next(i for i, x in enumerate(out) if x.startswith("race on "))
    assert out[first] == f"race on larger_number: {saved['tasks']['larger_number']['sentence']}"
    assert out[first + 1].startswith("Fixed-n reading, approximate after the race's stop (the race decides): On "
                                     "larger_number"), out
    assert out[-1] == str(tmp_path / "r")
