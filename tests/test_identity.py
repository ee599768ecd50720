"""Content-addressed unit identity and resume (harness/runs/identity.py, runner.plan_units), with the scripted
backend: which units a re-run into the same folder reuses, refuses, or (with force) runs next to the old
ones. The same rules on the real engine, through `harness run --resume` after an interrupt, are in
tests/test_cli_engine.py."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.errors import ConfigError
from harness.runs.identity import normalized_strategy, weights_fingerprint
from harness.runs.resume import check_resume_flags, resume_spec
from harness.strategy.strategies import parse_strategy

KEY = ["task", "strategy", "model", "example_id"]


class Counting(ScriptedBackend):
    """Scripted answers, counting engine starts (the runner starts an engine only when one is needed)."""

    def __init__(self, fn=lambda r: "The answer is yes.") -> None:
        super().__init__(fn)
        self.starts = 0

    def start(self) -> None:
        self.starts += 1


def go(out, backend=None, **kw):
    kw.setdefault("limit", 4)
    kw.setdefault("latency_probe", 0)  # no latency measures: these tests count the run's own requests
    return harness.run(kw.pop("tasks", ["coin_flip"]), kw.pop("strategies", ["zero_shot"]),
                       backend=backend or Counting(), out=out, progress=False, write_report=False, cache=False, **kw)


def test_normalized_strategy_drops_defaults():
    assert normalized_strategy(parse_strategy("cot:k=0")) == normalized_strategy(parse_strategy("cot")) == "cot"
    assert normalized_strategy(parse_strategy("few_shot:k=5,selection=first")) == "few_shot"
    assert normalized_strategy(parse_strategy("few_shot:seed=3,k=2")) == "few_shot:k=2,seed=3"
    assert normalized_strategy(parse_strategy("self_consistency:k=8,temperature=0.70")) == "self_consistency"


def test_same_config_reuses_every_unit_and_starts_no_engine(tmp_path):
    go(tmp_path / "r")
    again = Counting()
    df = go(tmp_path / "r", again)
    assert again.calls == [] and again.starts == 0  # nothing pending: no engine start
    assert len(df) == 4 and df["unit_id"].is_unique
    assert json.loads((tmp_path / "r" / "run.json").read_text())["resumes"][-1]["already_done"] == 4


@pytest.mark.parametrize("change, words", [
    ({"seed": 1}, "seed 0 -> 1"),
    ({"strategies": ["zero_shot:max_tokens=7"]}, None),  # another spec: another slot, no conflict
])
def test_changed_config_is_refused_in_one_line(tmp_path, change, words):
    out = tmp_path / "r"
    go(out)
    before = (out / "journal.jsonl").read_bytes()
    if words is None:  # a different strategy spec is a different column of results: it runs next to the old
        df = go(out, **change)
        assert len(df) == 8 and set(df["strategy"]) == {"zero_shot", "zero_shot:max_tokens=7"}
        return
    with pytest.raises(ConfigError) as err:
        go(out, **change)
    line = err.value.one_line()
    assert words in line and "--force" in line and "new --out" in line and "4 of 4 units differ" in line
    assert (out / "journal.jsonl").read_bytes() == before  # nothing touched


def test_edited_template_is_refused_then_force_runs_the_changed_units_labelled(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t.yaml").write_text("name: t\nsource: {generator: coin_flip}\nfields: {question: question}\n"
                                  "gold_field: answer\ntemplate: t.j2\nanswer_type: label\nlabels: ['yes', 'no']\n")
    (tasks / "t.j2").write_text("{% block input %}Q: {{ question }}{% endblock %}")
    out = tmp_path / "r"
    first = go(out, tasks=[str(tasks / "t.yaml")])
    (tasks / "t.j2").write_text("{% block input %}Question: {{ question }}{% endblock %}")
    with pytest.raises(ConfigError, match="template hash"):
        go(out, tasks=[str(tasks / "t.yaml")])
    backend = Counting()
    df = go(out, backend, tasks=[str(tasks / "t.yaml")], force=True)
    assert backend.calls == [4]
    assert len(df) == 8 and not df.duplicated(KEY).any()
    new = df[df["strategy"] != "zero_shot"]
    assert len(new) == 4 and new["strategy"].str.match(r"^zero_shot@[0-9a-f]{8}$").all()
    assert new["strategy"].nunique() == 1
    assert set(new["template_hash"]) != set(first["template_hash"])  # the rows carry their own template hash
    old = df[df["strategy"] == "zero_shot"].reset_index(drop=True)
    pd.testing.assert_frame_equal(old[["example_id", "template_hash", "unit_id"]],
                                  first[["example_id", "template_hash", "unit_id"]])
    again = Counting()  # the changed config again, without --force: its units are done now
    assert len(go(out, again, tasks=[str(tasks / "t.yaml")])) == 8 and again.calls == []


def test_changed_item_data_is_refused(tmp_path):
    data = tmp_path / "d.jsonl"
    task = tmp_path / "t.yaml"
    task.write_text("name: t\nsource: {path: d.jsonl}\nfields: {expression: q}\ngold_field: a\n"
                    "template: arithmetic.j2\nanswer_type: number\n")
    data.write_text('{"id": "1", "q": "1+1", "a": "2"}\n{"id": "2", "q": "2+2", "a": "4"}\n')
    go(tmp_path / "r", tasks=[str(task)], data_dir=tmp_path)
    data.write_text('{"id": "1", "q": "1+1", "a": "2"}\n{"id": "2", "q": "2+3", "a": "5"}\n')
    with pytest.raises(ConfigError, match=r"the item data \(1 of 2 units differ\)"):
        go(tmp_path / "r", tasks=[str(task)], data_dir=tmp_path)


def test_a_retried_error_replaces_its_row(tmp_path):
    from harness.records import Completion

    out = tmp_path / "r"
    go(out, Counting(lambda r: Completion.failed("boom") if "00001" in r.key else "The answer is yes."))
    backend = Counting()
    df = go(out, backend)
    assert backend.calls == [1] and len(df) == 4 and df["error"].isna().all()


def test_a_folder_written_before_run_specs_resumes_with_its_chunk_size_and_model_name(tmp_path):
    out = tmp_path / "r"
    backend = Counting()
    backend.model_name = "SmolLM2-135M-Instruct"
    go(out, backend, chunk_size=3)
    meta = json.loads((out / "run.json").read_text())
    meta["config"]["model_spec"] = "bundled"  # as the offline engine records it
    del meta["spec"]  # as every run.json written before RunSpec
    (out / "run.json").write_text(json.dumps(meta))
    spec, names = resume_spec(out)
    assert spec.chunk_size == 3 and spec.models == ("bundled",) and names == ["SmolLM2-135M-Instruct"]
    with pytest.raises(ConfigError, match="would change the run"):
        check_resume_flags({"chunk_size": 8}, spec, out)
    check_resume_flags({"chunk_size": 3}, spec, out)  # the recorded value again: no change


def test_the_bundled_folder_keeps_the_bundled_name():
    from harness.backends.models import BUNDLED_NAME, bundled_model_dir, resolve_model

    assert resolve_model(str(bundled_model_dir())) == (str(bundled_model_dir()), BUNDLED_NAME)


def test_weights_fingerprint_sees_a_changed_weight_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 100)
    a = weights_fingerprint(str(tmp_path))
    weights_fingerprint.cache_clear()
    (tmp_path / "model.safetensors").write_bytes(b"\1" * 100)
    assert weights_fingerprint(str(tmp_path)) != a


def test_an_old_journal_without_unit_ids_still_resumes(tmp_path):
    out = tmp_path / "r"
    go(out)
    lines = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    (out / "journal.jsonl").write_text("".join(json.dumps({"p": e["p"], "s": e["s"]}) + "\n" for e in lines[:2]))
    backend = Counting()
    df = go(out, backend)
    assert backend.calls == [2] and len(df) == 4 and not df.duplicated(KEY).any()


# Task hashes of the default suite's tasks in run folders written at a5affea (2026-12-04, before the RunSpec
# and the judge key): read from that commit's journal.jsonl. A task key added later must leave the hash of a
# task that does not use it unchanged (harness/runs/identity.py, _LATER_TASK_KEYS), or every older run folder
# is refused on resume as a changed config. The judge key (issue 25) broke this once; this pin caught it.
OLD_TASK_HASHES = {"country_capital": "64b4d89429010821", "larger_number": "64114f10c033bc60",
                   "sentiment": "614cf175e4b97cc1", "contact_json": "30f84e4750ef3981"}


@pytest.mark.parametrize("name", sorted(OLD_TASK_HASHES))
def test_task_hashes_of_older_run_folders_are_kept(name):
    from harness.runs.identity import task_hash
    from harness.task.tasks import load_task

    assert task_hash(load_task(name)) == OLD_TASK_HASHES[name]
