"""The judge pass end to end on the scripted backend: a task with `scorer: judge` in YAML, its rubric in
a template, judge_* columns, the request cache (a re-run judges from disk), a three-judge panel with
one unparseable judge -> no_majority whatever the judges' order, and the rule scorer beside the judge."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.errors import ConfigError

RUBRIC = """\
{% block context %}You grade answers. Reply with JSON only.{% endblock %}
{% block instructions %}Grade the answer against the reference fact.{% endblock %}
{% block input %}Question: Why is {{ thing }} {{ colour }}?
Reference fact: {{ gold }}
Answer: {{ output }}{% endblock %}
"""
TEMPLATE = """\
{% block context %}You explain things.{% endblock %}
{% block input %}Why is {{ thing }} {{ colour }}?{% endblock %}
"""
ITEMS = [{"id": "sky", "thing": "the sky", "colour": "blue", "answer": "Rayleigh scattering"},
         {"id": "grass", "thing": "grass", "colour": "green", "answer": "chlorophyll"},
         {"id": "blood", "thing": "blood", "colour": "red", "answer": "haemoglobin"}]


def write_task(folder: Path, judge: dict, *, scorer_params: str = "{}") -> Path:
    (folder / "why.j2").write_text(TEMPLATE)
    (folder / "why_rubric.j2").write_text(RUBRIC)
    (folder / "why.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
    path = folder / "why.yaml"
    path.write_text(f"""\
name: why
source: {{path: why.jsonl}}
fields: {{thing: thing, colour: colour}}
template: why.j2
answer_type: text
scorer: judge
scorer_params: {scorer_params}
judge: {json.dumps(judge)}
""")
    return path


def model(req):
    """Explains the sky and grass right, blood wrong."""
    text = req.messages[-1].content
    return {"sky": "Because of Rayleigh scattering.", "grass": "It has chlorophyll.",
            "blood": "Because it is hot."}[next(k for k in ("sky", "grass", "blood") if k in text)]


def fair_judge(req):
    """Passes an answer that contains the reference fact (read from the rendered rubric)."""
    user = req.messages[-1].content
    fact = user.split("Reference fact: ")[1].split("\n")[0]
    answer = user.split("Answer: ")[1]
    ok = fact.lower() in answer.lower()
    return json.dumps({"reasoning": "has the fact" if ok else "misses the fact", "score": 5 if ok else 1, "pass": ok})


def test_judge_scorer_end_to_end_with_cache(tmp_path):
    task = write_task(tmp_path, {"rubric": "why_rubric.j2", "model": "fair", "threshold": 4})
    judge = ScriptedBackend(fair_judge, model_name="fair-judge")
    df = harness.run([str(task)], ["zero_shot"], backend=ScriptedBackend(model), judges={"fair": judge},
                     out=tmp_path / "run", progress=False, cache_dir=tmp_path / "cache", latency_probe=0)
    got = df.set_index("example_id")
    assert got["correct"].to_dict() == {"sky": True, "grass": True, "blood": False}
    assert got.loc["blood", "judge_verdict"] == "fail" and got.loc["sky", "judge_score"] == 5
    assert "Reference fact: haemoglobin" in json.loads(got.loc["blood", "judge_prompt"])[-1]["content"]
    assert json.loads(got.loc["sky", "judge_output"])["reasoning"] == "has the fact"
    assert judge.calls == [3]  # one batched call for the chunk
    # judge tokens are counted apart from the model's
    assert (got["judge_prompt_tokens"] > 0).all() and (got["judge_prompt_tokens"] != got["prompt_tokens"]).all()
    summary = harness.load_run(tmp_path / "run")["summary"]
    assert summary.loc[0, "accuracy"] == pytest.approx(2 / 3) and summary.loc[0, "judge_parse_rate"] == 1.0
    # a second run in a new folder: generation and judge calls both come from the request cache
    judge2 = ScriptedBackend(fair_judge, model_name="fair-judge")  # same identity: the cache answers
    df2 = harness.run([str(task)], ["zero_shot"], backend=ScriptedBackend(model), judges={"fair": judge2},
                      out=tmp_path / "run2", progress=False, cache_dir=tmp_path / "cache", latency_probe=0)
    assert df2["judge_cached"].all() and df2["correct"].tolist() == df["correct"].tolist()
    assert judge2.calls == []


def test_three_judge_panel_one_unparseable_is_no_majority_in_every_order(tmp_path):
    judges = {"good1": ScriptedBackend(fair_judge, model_name="g1"),
              "good2": ScriptedBackend(fair_judge, model_name="g2"),
              "broken": ScriptedBackend(lambda r: "I think it deserves a 5.", model_name="broken")}
    outcomes = set()
    for i, order in enumerate(itertools.permutations(judges)):
        task = write_task(tmp_path, {"rubric": "why_rubric.j2", "model": list(order)})
        df = harness.run([str(task)], ["zero_shot"], backend=ScriptedBackend(model), judges=judges,
                         out=tmp_path / f"run{i}", progress=False, cache=False, latency_probe=0)
        assert (df["judge_verdict"] == "no_majority").all() and not df["correct"].any()
        assert not df["judge_parse_ok"].any() and df["no_majority"].all()
        outcomes.add(tuple(df.sort_values("example_id")["judge_verdict"]))
    assert len(outcomes) == 1
    # without the broken judge, the two agree: the verdict is theirs
    task = write_task(tmp_path, {"rubric": "why_rubric.j2", "model": ["good1", "good2"]})
    df = harness.run([str(task)], ["zero_shot"], backend=ScriptedBackend(model), judges=judges,
                     out=tmp_path / "run-two", progress=False, cache=False, latency_probe=0)
    assert df.set_index("example_id")["judge_verdict"].to_dict() == {"sky": "pass", "grass": "pass", "blood": "fail"}


def test_rule_scorer_runs_beside_the_judge(tmp_path):
    lenient = ScriptedBackend(lambda r: json.dumps({"reasoning": "fine", "score": 4, "pass": True}))
    task = write_task(tmp_path, {"rubric": "why_rubric.j2", "model": "lenient"}, scorer_params="{rule: contains}")
    df = harness.run([str(task)], ["zero_shot"], backend=ScriptedBackend(model), judges={"lenient": lenient},
                     out=tmp_path / "run", progress=False, cache=False, latency_probe=0)
    got = df.set_index("example_id")
    assert got["rule_correct"].to_dict() == {"sky": True, "grass": True, "blood": False}
    assert got["correct"].all()  # the lenient judge passes everything; the rule does not
    import pandas as pd

    q = pd.read_csv(tmp_path / "run" / "judge.csv").iloc[0]
    assert (q["tp"], q["fp"], q["tn"], q["fn"]) == (2, 1, 0, 0)
    assert q["q1"] == 1.0 and q["q0"] == 0.0 and q["rule_accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("judge,scorer_params,field", [
    ({"rubric": "missing.j2", "model": "x"}, "{}", "template"),
    ({"rubric": "why_rubric.j2", "model": "nonsense"}, "{}", "judge.model"),
    ({"rubric": "why_rubric.j2", "model": "x", "bogus": 1}, "{}", "judge.bogus"),
    ({"rubric": "why_rubric.j2", "model": "x"}, "{rule: judge}", "scorer_params"),
    ({"rubric": "bad_rubric.j2", "model": "x"}, "{}", "colur"),
])
def test_bad_judge_config_is_one_line_before_anything_runs(tmp_path, judge, scorer_params, field):
    task = write_task(tmp_path, judge, scorer_params=scorer_params)
    (tmp_path / "bad_rubric.j2").write_text(RUBRIC.replace("{{ colour }}", "{{ colur }}"))
    with pytest.raises(ConfigError) as exc:
        harness.run([str(task)], ["zero_shot"], backend=ScriptedBackend(model), judges={"x": ScriptedBackend(model)},
                    out=tmp_path / "run", progress=False, cache=False, latency_probe=0)
    line = exc.value.one_line()
    assert field in line and "\n" not in line
    assert not (tmp_path / "run").exists()


PAIR_RUBRIC = """\
{% block context %}You compare two answers. Reply with JSON only.{% endblock %}
{% block input %}Question: Why is {{ thing }} {{ colour }}?
Reference fact: {{ gold }}
First answer: {{ first }}
Second answer: {{ second }}{% endblock %}
"""


def terse_model(req):
    """A second strategy's answers (template variant 'terse'): wrong on the sky, right elsewhere."""
    text = req.messages[-1].content
    if "Briefly" not in text:
        return model(req)
    return {"sky": "It reflects the sea.", "grass": "Chlorophyll.", "blood": "Haemoglobin."}[
        next(k for k in ("sky", "grass", "blood") if k in text)]


def fact_preferring(req):
    user = req.messages[-1].content
    fact = user.split("Reference fact: ")[1].split("\n")[0].lower()
    first = user.split("First answer: ")[1].split("\n")[0].lower()
    second = user.split("Second answer: ")[1].lower()
    winner = "tie" if (fact in first) == (fact in second) else ("first" if fact in first else "second")
    return json.dumps({"reasoning": "the fact decides", "winner": winner})


def test_pairwise_both_orders_flip_rate_and_sign_test(tmp_path):
    task = write_task(tmp_path, {"rubric": "pair_rubric.j2", "model": "j", "mode": "pairwise"})
    (tmp_path / "pair_rubric.j2").write_text(PAIR_RUBRIC)
    (tmp_path / "why_terse.j2").write_text(TEMPLATE.replace("Why is", "Briefly: why is"))
    strategies = ["zero_shot", "zero_shot:template=why_terse.j2"]
    for name, fn, expected, flips in [
        ("fair", fact_preferring, {"sky": "A", "grass": "tie", "blood": "B"}, 0.0),
        ("first", lambda r: json.dumps({"reasoning": "first is best", "winner": "first"}),
         {"sky": "tie", "grass": "tie", "blood": "tie"}, 1.0),
    ]:
        out = tmp_path / f"run-{name}"
        judge = ScriptedBackend(fn, model_name=name)
        harness.run([str(task)], strategies, backend=ScriptedBackend(terse_model), judges={"j": judge}, out=out,
                    progress=False, cache=False, latency_probe=0)
        import pandas as pd

        pairs = pd.read_csv(out / "pairwise.csv")
        assert pairs.set_index("example_id")["outcome"].to_dict() == expected
        assert judge.calls == [6]  # 3 items x 2 orders in one batch
        summary = harness.load_run(out)["run"]["pairwise"][0]
        assert summary["flip_rate"] == flips and summary["n"] == 3
        assert summary["strategy_a"] == "zero_shot"


def test_report_shows_the_judge_and_pairwise_sections(tmp_path):
    from harness.reports.report import write_report

    lenient = ScriptedBackend(lambda r: json.dumps({"reasoning": "fine", "score": 4, "pass": True}))
    task = write_task(tmp_path, {"rubric": "why_rubric.j2", "model": "lenient"}, scorer_params="{rule: contains}")
    harness.run([str(task)], ["zero_shot"], backend=ScriptedBackend(model), judges={"lenient": lenient},
                out=tmp_path / "run", progress=False, cache=False, latency_probe=0)
    html, md = write_report(tmp_path / "run")[:2]
    text = md.read_text()
    assert "## The judge against the rule" in text and "| why | scripted | zero_shot | 3 |" in text
    assert '<section id="judge">' in html.read_text()


def test_calibration_file_gives_q0_q1_and_the_corrected_accuracy(tmp_path):
    from harness.stats.judge import confidence_interval, point_estimate

    def sky_lover(req):
        """Fair, except that it passes every answer about the sky."""
        if "the sky" in req.messages[-1].content:
            return json.dumps({"reasoning": "sky", "score": 5, "pass": True})
        return fair_judge(req)

    labels = [{"id": f"c{i}", "thing": it["thing"], "colour": it["colour"], "answer": it["answer"], "output": out,
               "label": lab}
              for i, (it, out, lab) in enumerate([(ITEMS[0], "Rayleigh scattering does it.", True),
                                                  (ITEMS[0], "The sea is blue.", False),
                                                  (ITEMS[1], "Chlorophyll.", True), (ITEMS[1], "Paint.", False),
                                                  (ITEMS[2], "Haemoglobin.", True), (ITEMS[2], "Ketchup.", False)])]
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels))
    task = write_task(tmp_path, {"rubric": "why_rubric.j2", "model": "j", "calibration": {"path": "labels.jsonl"}})
    harness.run([str(task)], ["zero_shot"], backend=ScriptedBackend(model), out=tmp_path / "run", progress=False,
                judges={"j": ScriptedBackend(sky_lover)}, cache=False, latency_probe=0)
    (s,) = harness.load_run(tmp_path / "run")["run"]["judge_calibration"]
    q0, q1 = 2 / 3, 1.0  # the sky's wrong answer passes; every right answer passes
    assert (s["m0"], s["m1"], s["q0"], s["q1"]) == (3, 3, pytest.approx(q0), 1.0)
    p = 2 / 3  # the run's rows: sky and grass pass, blood fails
    assert s["p_raw"] == pytest.approx(p) and s["theta"] == pytest.approx(point_estimate(p, q0, q1))
    assert (s["theta_low"], s["theta_high"]) == pytest.approx(confidence_interval(p, q0, q1, n=3, m0=3, m1=3))
