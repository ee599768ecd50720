"""Strategy grids, --dry-run, exemplar draws and orders, template variants (paired statistics across
them), and task data next to the task file. Scripted backend: no model needed."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests

import harness
from harness.backends.scripted import ScriptedBackend
from harness.cli import main
from harness.errors import ConfigError, TemplateError
from harness.strategy.grid import expand_grid
from harness.reports.paired import pairs_table
from harness.strategy.strategies import parse_strategy

ROOT = Path(__file__).resolve().parents[1]
TERSE = ROOT / "prompts" / "coin_flip_terse.j2"


# -- grid expansion -------------------------------------------------------------------------
def test_grid_expands_to_the_product_first_key_slowest():
    specs = expand_grid("few_shot:k={0,1,3,5},seed={0,1,2}")
    assert len(specs) == 12 and len(set(specs)) == 12
    assert specs[:4] == ["few_shot:k=0,seed=0", "few_shot:k=0,seed=1", "few_shot:k=0,seed=2", "few_shot:k=1,seed=0"]
    assert expand_grid("cot:temperature={0,0.7}") == ["cot:temperature=0", "cot:temperature=0.7"]
    assert expand_grid(" zero_shot ") == ["zero_shot"]
    assert expand_grid("few_shot:k={1,3},order=shuffled") == ["few_shot:k=1,order=shuffled",
                                                              "few_shot:k=3,order=shuffled"]
    for spec in specs:  # every grid point is an ordinary strategy
        assert parse_strategy(spec).spec == spec


@pytest.mark.parametrize("spec,text", [
    ("few_shot:k={1,3", "never closed"), ("few_shot:k=1,3}", "without '{'"), ("few_shot:k={}", "empty value"),
    ("few_shot:k={1,,3}", "empty value"), ("few_shot:k={1,1}", "twice"), ("few_shot:k={{1}}", "nested"),
    ("few_shot:k=1{2,3}", "whole value"), ("{few_shot,cot}", "must follow a key"),
    ("few_shot:k={1,2,3,4,5,6,7,8,9,10},seed={0,1,2,3,4,5,6,7,8,9},top_k={1,2,3,4,5,6,7,8,9,10,11}", "more than"),
])
def test_bad_grids_are_one_line_errors(spec, text):
    with pytest.raises(ConfigError) as info:
        expand_grid(spec)
    assert text in info.value.one_line() and "\n" not in info.value.one_line()


def test_a_grid_runs_one_row_group_per_point(tmp_path):
    df = harness.run(["coin_flip"], ["few_shot:k={1,2},seed={0,1}", "cot:temperature={0,0.7}"],
                     backend=ScriptedBackend(lambda r: "The answer is yes."), limit=4, out=tmp_path / "r",
                     progress=False, write_report=False, cache=False)
    summary = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert sorted(summary["strategy"]) == sorted(["few_shot:k=1,seed=0", "few_shot:k=1,seed=1", "few_shot:k=2,seed=0",
                                                  "few_shot:k=2,seed=1", "cot:temperature=0", "cot:temperature=0.7"])
    assert len(df) == 6 * 4 and (summary["n"] == 4).all()


def test_dry_run_prints_the_grid_and_the_request_count_and_starts_nothing(tmp_path, capsys, monkeypatch):
    import harness.cli

    def tripwire(*a, **k):
        raise AssertionError("--dry-run must not build a backend")
    import harness.api
    monkeypatch.setattr(harness.api, "spec_backends", tripwire)
    out = tmp_path / "never"
    code = main(["run", "--task", "coin_flip", "--strategy", "few_shot:k={0,1,3,5},seed={0,1,2}",
                 "--strategy", "self_consistency:k=4", "--limit", "5", "--dry-run", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert "13 strategies" in text and "65 requests (80 generations)" in text
    assert "few_shot:k=5,seed=2" in text and "self_consistency:k=4" in text
    # bad input is still caught (every prompt is rendered): k=5 with a 1-item pool would fail the same way
    assert main(["run", "--task", "coin_flip", "--strategy", "few_shot:k={1,3", "--dry-run"]) == 2


# -- exemplar draws, orders, sampling seed ------------------------------------------------------
def _shots(spec: str, task, ex):
    return [e.id for e in parse_strategy(spec).exemplars(task, ex, run_seed=0)]


def test_seed_draws_one_set_per_seed_for_every_item_and_order_shuffles_it():
    task = harness.load_task("coin_flip")
    exs = task.examples[:10]
    s0 = [_shots("few_shot:k=3,seed=0", task, ex) for ex in exs]
    assert all(s == s0[0] for s in s0)  # one set for every item (a byte-identical prefix)
    assert _shots("few_shot:k=3,seed=1", task, exs[0]) != s0[0]  # another draw
    assert _shots("few_shot:k=3", task, exs[0]) == [e.id for e in task.pool[:3]]  # no seed: the first k
    shuffled = [_shots("few_shot:k=3,seed=0,order=shuffled,order_seed=1", task, ex) for ex in exs]
    assert all(s == shuffled[0] for s in shuffled) and sorted(shuffled[0]) == sorted(s0[0])
    orders = {tuple(_shots(f"few_shot:k=3,seed=0,order=shuffled,order_seed={o}", task, exs[0])) for o in range(6)}
    assert len(orders) > 1  # order seeds give different orders of the same set
    # the item itself is never an exemplar, even when the set would contain it
    own = type(task)(spec=task.spec.model_copy(update={"fewshot": None}), file=task.file,
                     template_folders=task.template_folders)
    for ex in own.examples[:30]:
        shots = _shots("few_shot:k=4,seed=3", own, ex)
        assert len(shots) == 4 and ex.id not in shots


def test_sampling_seed_changes_only_the_sampling_seed():
    task = harness.load_task("coin_flip")
    ex = task.examples[0]
    a = parse_strategy("few_shot:k=2,seed=1,temperature=0.7").expand(task, ex)[0]
    b = parse_strategy("few_shot:k=2,seed=1,temperature=0.7,sampling_seed=9").expand(task, ex)[0]
    assert a.messages == b.messages and a.sampling.seed == 1 and b.sampling.seed == 9


# -- template variants ----------------------------------------------------------------------
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_template_variant_by_path_keeps_name_and_hash_on_every_row(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    df = harness.run(["coin_flip"], ["zero_shot", "zero_shot:template=prompts/coin_flip_terse.j2",
                                     "few_shot:k=2,template=coin_flip_terse.j2"],
                     backend=ScriptedBackend(lambda r: "The answer is yes."), limit=5, out=tmp_path / "r",
                     progress=False, write_report=False, cache=False)
    by = {s: g for s, g in df.groupby("strategy")}
    base = by["zero_shot"]
    assert set(base["template"]) == {"coin_flip.j2"} and set(base["template_hash"]) == {
        _digest(ROOT / "prompts" / "coin_flip.j2")}
    terse = by["zero_shot:template=prompts/coin_flip_terse.j2"]
    assert set(terse["template"]) == {"prompts/coin_flip_terse.j2"} and set(terse["template_hash"]) == {_digest(TERSE)}
    assert set(by["few_shot:k=2,template=coin_flip_terse.j2"]["template_hash"]) == {_digest(TERSE)}
    assert "careful assistant" in base["prompt"].iloc[0] and "careful assistant" not in terse["prompt"].iloc[0]
    assert "Heads up at the end?" in terse["prompt"].iloc[0]
    import json
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert meta["templates"]["prompts/coin_flip_terse.j2"] == _digest(TERSE)


NAMED_TASK = """\
name: t
source: {path: data.jsonl}
fields: {question: question}
gold_field: answer
template: tpl.j2
templates: {terse: terse.j2, polite: polite.j2}
answer_type: number
"""


def _named_task(tmp: Path) -> Path:
    (tmp / "tpl.j2").write_text("{% block input %}Q: {{ question }}{% endblock %}")
    (tmp / "terse.j2").write_text("{% block input %}{{ question }}={% endblock %}")
    (tmp / "polite.j2").write_text("{% block input %}Please: what is {{ question }}?{% endblock %}")
    (tmp / "data.jsonl").write_text("".join(f'{{"question": "{i}+{i}", "answer": "{2 * i}"}}\n' for i in range(8)))
    path = tmp / "task.yaml"
    path.write_text(NAMED_TASK)
    return path


def test_named_variants_from_the_task_file_and_data_next_to_it(tmp_path):
    path = _named_task(tmp_path)
    # no --data-dir: data.jsonl is read next to the task file
    df = harness.run([str(path)], ["zero_shot", "zero_shot:template={terse,polite}"],
                     backend=ScriptedBackend(lambda r: "The answer is 2."), out=tmp_path / "r", progress=False,
                     write_report=False, cache=False)
    assert len(df) == 3 * 8
    hashes = df.groupby("template")["template_hash"].agg(set).to_dict()
    assert hashes == {"tpl.j2": {_digest(tmp_path / "tpl.j2")}, "terse": {_digest(tmp_path / "terse.j2")},
                      "polite": {_digest(tmp_path / "polite.j2")}}
    assert df[df["template"] == "terse"]["prompt"].str.contains("0\\+0=").any()


def test_data_path_relative_to_the_task_file_refuses_escape(tmp_path):
    (tmp_path / "sub").mkdir()
    path = _named_task(tmp_path / "sub")
    assert len(harness.load_task(path).examples) == 8
    path.write_text(NAMED_TASK.replace("path: data.jsonl", "path: ../data.jsonl"))
    with pytest.raises(ConfigError, match="inside the task file's folder"):
        harness.load_task(path).examples
    path.write_text(NAMED_TASK.replace("path: data.jsonl", "path: absent.jsonl"))
    with pytest.raises(ConfigError) as info:
        harness.load_task(path).examples
    assert "put the file next to the task file" in info.value.one_line()


@pytest.mark.parametrize("value,text", [("nope.j2", "not found"), ("/etc/passwd", "absolute"),
                                        ("../prompts/coin_flip.j2", "leaves its folder"), ("link.j2", "symbolic link")])
def test_variant_paths_are_refused_like_task_templates(tmp_path, monkeypatch, value, text):
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "outside.j2"
    outside.write_text("{% block input %}secret{% endblock %}")
    os.symlink(outside, tmp_path / "link.j2")
    with pytest.raises(TemplateError, match=text):
        harness.run(["coin_flip"], [f"zero_shot:template={value}"], backend=ScriptedBackend(lambda r: "yes"),
                    limit=2, out=tmp_path / "r", progress=False, write_report=False, cache=False)
    assert not (tmp_path / "r").exists()


def test_variant_files_render_in_the_sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.j2").write_text("{% block input %}{{ ''.__class__.__mro__[1].__subclasses__() }}{% endblock %}")
    with pytest.raises(TemplateError, match="unsafe"):
        harness.run(["coin_flip"], ["zero_shot:template=evil.j2"], backend=ScriptedBackend(lambda r: "yes"),
                    limit=2, out=tmp_path / "r", progress=False, write_report=False, cache=False)
    (tmp_path / "strict.j2").write_text("{% block input %}{{ nope }}{% endblock %}")
    with pytest.raises(TemplateError, match="nope"):
        harness.run(["coin_flip"], ["zero_shot:template=strict.j2"], backend=ScriptedBackend(lambda r: "yes"),
                    limit=2, out=tmp_path / "r", progress=False, write_report=False, cache=False)


def test_template_variants_get_paired_statistics(tmp_path, monkeypatch):
    """Two wordings on the same items: McNemar, the paired bootstrap and Holm treat them like strategies.
    The scripted model is right under the default template, and under the terse one only on odd items."""
    monkeypatch.chdir(ROOT)

    task = harness.load_task("coin_flip")
    gold = {ex.fields["question"]: ex.gold for ex in task.examples}

    def answer(req):
        text = req.messages[-1].content
        question = text.rsplit("Q: ", 1)[-1].split("\n\n")[0].strip()
        if "Heads up at the end?" in text and int(hashlib.sha256(question.encode()).hexdigest(), 16) % 2:
            return "The answer is maybe."
        return f"The answer is {gold[question]}."
    strategies = ["zero_shot", "zero_shot:template=prompts/coin_flip_terse.j2", "cot"]
    df = harness.run(["coin_flip"], strategies, backend=ScriptedBackend(answer), limit=30, out=tmp_path / "r",
                     progress=False, cache=False, report=True)
    pairs = pd.read_csv(tmp_path / "r" / "pairs.csv")
    assert len(pairs) == 3
    row = pairs[(pairs["strategy_b"] == strategies[1]) & (pairs["strategy_a"] == "zero_shot")].iloc[0]
    a = df[df["strategy"] == "zero_shot"].set_index("example_id")["correct"].astype(bool)
    b = df[df["strategy"] == strategies[1]].set_index("example_id")["correct"].astype(bool).loc[a.index]
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    assert only_a > 5 and only_b == 0
    assert row["n"] == 30 and row["diff"] == pytest.approx(a.mean() - b.mean())
    assert row["p_mcnemar"] == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue, rel=1e-12)
    ours = pairs_table(df)
    np.testing.assert_allclose(ours["p_holm"], multipletests(ours["p_mcnemar"], method="holm")[1])
    assert row["p_holm"] < 0.05
    md = (tmp_path / "r" / "report.md").read_text()
    assert "zero_shot:template=prompts/coin_flip_terse.j2" in md


def test_the_reference_page_lists_every_strategy_and_key():
    from harness.strategy.strategies import DECODING_KEYS, STRATEGIES

    doc = (ROOT / "docs" / "strategies.md").read_text()
    keys = set(DECODING_KEYS) | {k for _, own in STRATEGIES.values() for k in own}
    missing = sorted(k for k in set(STRATEGIES) | keys if f"`{k}`" not in doc)
    assert not missing, f"document these in docs/strategies.md: {missing}"


def test_every_readme_tour_run_is_bounded():
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## Quick tour"):readme.index("From Python")]
    runs = [line for line in tour.splitlines() if line.startswith("harness run")]
    assert runs and all("--limit" in line for line in runs), [r for r in runs if "--limit" not in r]
