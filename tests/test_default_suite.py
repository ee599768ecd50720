"""The default suite (`harness run` with no task): its composition, its generated data, and, on the real
engine, that its tasks' answers are extracted from the bundled model's real outputs."""
from __future__ import annotations

import datetime
import json
import re

import pandas as pd
import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.runs.defaults import DEFAULT_LIMIT, DEFAULT_STRATEGIES, DEFAULT_SUITE, DEFAULT_TASKS
from harness.task.generators import GENERATORS
from harness.runs.resume import resume_spec
from harness.runs.units import build_units
from harness.strategy.strategies import parse_strategy
from harness.runs.suite import resolve_plan
from harness.task.tasks import load_task

NEW_TASKS = ["country_capital", "larger_number", "sentiment", "contact_json", "unit_conversion", "next_day"]


def test_default_suite_is_generated_and_has_the_strategies_the_report_needs():
    tasks = {name: load_task(name) for name in DEFAULT_SUITE}
    for task in tasks.values():  # no download: every source and exemplar pool is a built-in generator
        assert task.spec.source.generator and not (task.spec.source.path or task.spec.source.hub)
        assert task.spec.fewshot is None or task.spec.fewshot.generator
        assert len(task.examples) >= DEFAULT_LIMIT
    strategies = {name: [parse_strategy(s) for s in specs] for name, specs in DEFAULT_SUITE.items()}
    sc = [(t, s) for t, ss in strategies.items() for s in ss if type(s).__name__ == "SelfConsistency"]
    assert len(sc) == 1 and 2 <= int(sc[0][1].params["k"]) <= 8  # one maj@k curve, small k
    json_tasks = [t for t in DEFAULT_SUITE if tasks[t].spec.answer_type == "json"]
    assert any({s.guided for s in strategies[t]} == {True, False} for t in json_tasks)  # guided vs free
    assert all(len(ss) >= 2 for ss in strategies.values())  # every task has a paired comparison
    # the harder tasks stay available by name, outside the default suite
    for name in ("last_letter_concat", "multistep_arithmetic", "person_json", "coin_flip"):
        assert name not in DEFAULT_SUITE and load_task(name).examples


def test_no_arguments_plan_is_the_default_suite_and_flags_cross_with_the_defaults():
    plan = resolve_plan()
    assert [(t.name, tuple(s.spec for s in ss)) for t, ss in plan] == list(DEFAULT_SUITE.items())
    only_strategy = resolve_plan(strategies=["cot"])
    assert [t.name for t, _ in only_strategy] == list(DEFAULT_TASKS)
    assert all([s.spec for s in ss] == ["cot"] for _, ss in only_strategy)
    only_task = resolve_plan(tasks=["coin_flip"])
    assert [s.spec for s in only_task[0][1]] == list(DEFAULT_STRATEGIES)
    with pytest.raises(harness.errors.ConfigError):
        resolve_plan(tasks=["coin_flip"], suite={"coin_flip": ["cot"]})


def _requests(seed: int) -> list:
    return [r for t, ss in resolve_plan() for u in build_units([t], ss, limit=DEFAULT_LIMIT, seed=seed)
            for r in u.requests]


def test_default_suite_is_deterministic_from_its_seeds():
    first, again = _requests(0), _requests(0)
    cells = sum(len(ss) for ss in DEFAULT_SUITE.values())
    calibrated = sum("calibrate=true" in s for ss in DEFAULT_SUITE.values() for s in ss)  # + a content-free request
    assert first == again and len(first) == DEFAULT_LIMIT * (cells + calibrated)
    for name, gen in GENERATORS.items():
        if name == "needle_haystack":
            continue
        assert gen(n=20, seed=1) == gen(n=20, seed=1)
        assert gen(n=20, seed=1) != gen(n=20, seed=2), name


def test_generated_golds_agree_with_independent_answers():
    monday = datetime.date(2024, 1, 1)  # a Monday: the calendar, not the generator's list, names the days
    name = {(monday + datetime.timedelta(days=i)).strftime("%A"): i for i in range(7)}
    for row in GENERATORS["next_day"](n=200, seed=3, max_offset=3, before_share=0.5):
        m = re.match(r"What day of the week (?:comes (after|before) (\w+)|is (\w+) days? (after|before) (\w+))\?$",
                     row["question"])
        assert m, row["question"]
        k = {"one": 1, "two": 2, "three": 3}[m[3]] if m[3] else 1
        direction, start = (m[1], m[2]) if m[1] else (m[4], m[5])
        day = monday + datetime.timedelta(days=name[start] + (k if direction == "after" else -k))
        assert row["answer"] == day.strftime("%A")
    for decimals in (False, True):
        for row in GENERATORS["larger_number"](n=200, seed=3, decimals=decimals, low=1, high=99):
            assert float(row["answer"]) == max(float(row["a"]), float(row["b"])) and row["a"] != row["b"]
            assert row["answer"] in row["pair"]
    per = {("hours", "minutes"): 60, ("minutes", "seconds"): 60, ("days", "hours"): 24, ("weeks", "days"): 7,
           ("meters", "centimeters"): 100, ("kilometers", "meters"): 1000, ("kilograms", "grams"): 1000,
           ("liters", "milliliters"): 1000, ("years", "months"): 12, ("feet", "inches"): 12,
           ("dozens", "eggs"): 12, ("centimeters", "millimeters"): 10}
    for row in GENERATORS["unit_conversion"](n=200, seed=3):
        assert int(row["answer"]) == row["quantity"] * per[(row["unit"], row["into"])]
    for row in GENERATORS["contact_json"](n=100, seed=3):
        assert row["answer"]["name"] in row["text"] and row["answer"]["city"] in row["text"]
    rows = GENERATORS["country_capital"](n=66, seed=3)
    assert len({r["country"] for r in rows}) == 66 and all(r["answer"] in r["capitals"] for r in rows)
    labels = GENERATORS["sentiment"](n=400, seed=3, hard_share=0.5)
    assert {r["kind"] for r in labels} == {"plain", "negated", "contrast"}
    assert 0.4 < sum(r["answer"] == "positive" for r in labels) / len(labels) < 0.6


def test_a_suite_run_is_recorded_and_resumed_as_a_suite(tmp_path):
    suite = {"larger_number": ["zero_shot", "self_consistency:k=3"], "contact_json": ["zero_shot:guided=true"]}
    backend = ScriptedBackend(lambda r: ['{"name": "Ada", "city": "Oslo"}'] * r.sampling.n)
    out = tmp_path / "r"
    df = harness.run(suite=suite, backend=backend, limit=4, out=out, progress=False, write_report=False)
    assert sorted(df.groupby(["task", "strategy"]).size().items()) == [
        (("contact_json", "zero_shot:guided=true"), 4), (("larger_number", "self_consistency:k=3"), 4),
        (("larger_number", "zero_shot"), 4)]
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert cfg["suite"] == suite
    spec, _ = resume_spec(out)
    assert spec.suite and not spec.tasks and spec.limit == 4
    again = ScriptedBackend(lambda r: "unused")
    df2 = harness.run_spec(spec, backend=again, progress=False)
    assert again.calls == [] and len(df2) == 12  # nothing left to run, nothing crossed into new cells


# -- on the real engine ---------------------------------------------------------------------------------
ANSWER_LINE = re.compile(r"^\s*(?:A:\s*)?The answer is ([^\n.]+(?:\.\d+)?)\.?\s*$")


@pytest.mark.engine
def test_new_tasks_extract_answers_from_real_outputs(engine, tmp_path):
    """The bundled model, greedy, on the suite's strategies (and the extra new tasks zero- and few-shot):
    when an output is exactly "The answer is X.", the harness's answer is X (checked by a separate regex),
    most short-form outputs parse, and guided JSON always validates against the task's schema."""
    from jsonschema import Draft202012Validator

    suite = dict(DEFAULT_SUITE)
    suite.update({t: ("zero_shot", "few_shot:k=3") for t in NEW_TASKS if t not in suite})
    df = harness.run(suite=suite, backend=engine, limit=6, out=tmp_path / "r", progress=False,
                     write_report=False, cache=False)
    assert df["error"].isna().all()
    short = df[~df["strategy"].str.startswith(("cot", "self_consistency"))]
    rate = short.groupby(["task", "strategy"])["parse_ok"].mean()
    assert short["parse_ok"].mean() >= 0.7 and (rate > 0).all(), rate.to_dict()
    examples = {(t, ex.id): ex for t in suite for ex in load_task(t).examples}
    checked = 0
    for r in short[short["task"] != "contact_json"].itertuples():
        m = ANSWER_LINE.match(r.output)
        if not m:
            continue
        ex, said = examples[(r.task, r.example_id)], m[1].strip()
        got = None if pd.isna(r.answer) else r.answer  # a missing answer reads back as NaN
        if ex.labels:  # a label task: the label said, in the task's spelling; outside the set, no answer
            want = next((lb for lb in ex.labels if lb.lower() == said.lower()), None)
            assert got == want, (r.task, r.output, got)
        else:
            assert got is not None and float(got) == float(said.replace(",", "")), (r.output, got)
        checked += 1
    assert checked >= len(short) // 3
    guided = df[(df["task"] == "contact_json") & df["guided"]]
    schema = load_task("contact_json").json_schema
    assert len(guided) == 6 and guided["schema_valid"].all()
    for out in guided["output"]:
        assert Draft202012Validator(schema).is_valid(json.loads(out))
    majk = pd.read_csv(tmp_path / "r" / "majk.csv")
    assert set(majk["task"]) == {t for t, ss in DEFAULT_SUITE.items() if any("self_consistency" in s for s in ss)}


def _script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "readme-verdict.py"
    spec = importlib.util.spec_from_file_location("readme_verdict", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_verdict_script_quotes_a_default_suite_run(tmp_path):
    """The script rewrites only the marked block of a README, from a run of the default suite, and
    refuses any other run."""
    import shutil
    from pathlib import Path

    script = _script()
    counter = iter(range(10**6))

    def answer(r):
        i = next(counter)
        return ['{"name": "Ada", "city": "Oslo"}' if i % 2 else "The answer is Paris."] * r.sampling.n

    out = tmp_path / "run"
    harness.run(backend=ScriptedBackend(answer), limit=DEFAULT_LIMIT, out=out, progress=False, write_report=False)
    readme = tmp_path / "README.md"
    shutil.copy(Path(__file__).resolve().parent.parent / "README.md", readme)
    before = readme.read_text()
    assert script.main([str(out), "--readme", str(readme)]) == 0
    after = readme.read_text()
    head = before.split(script.START)[0]
    assert after.startswith(head) and after.endswith(before.split(script.END)[1])
    assert "bash scripts/install.sh && .venv/bin/harness run experiments/default.yaml\nbash scripts/install.sh --test" in after
    block = after.split(script.START)[1].split(script.END)[0]
    assert sum(line.startswith("> - On ") for line in block.splitlines()) == len(DEFAULT_SUITE)
    assert all(f"| {t} |" in block for t in DEFAULT_SUITE) and "maj@k of self_consistency:k=5" in block
    assert script.main([str(out), "--readme", str(readme), "--check"]) == 0
    other = tmp_path / "other"
    harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(answer), limit=3, out=other, progress=False,
                write_report=False)
    assert script.main([str(other), "--readme", str(readme)]) == 2 and readme.read_text() == after
    readme.write_text(before)
    assert script.main([str(out), "--readme", str(readme), "--check"]) == 1
