"""The scorer table: every scorer against an independent implementation or hand-checked cases, tasks
choosing a scorer in YAML, bad scorer settings as one-line errors, and the summary looping over the table."""
from __future__ import annotations

import random
import re
import string
from collections import Counter

import numpy as np
import pandas as pd
import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.errors import ConfigError
from harness.scoring.scorers import SCORERS, ScoreInput, all_aggregates, row_columns
from harness.reports.stats import summarize


def _x(answer, gold, *, output=None, rule="answer_is", params=None, gold_norm=None):
    return ScoreInput(answer, output if output is not None else (answer or ""), gold, gold_norm, rule, params or {})


# -- SQuAD F1: the official v1.1 evaluation, written out here as the reference ----------------
def _ref_normalize(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _ref_f1(pred, gold):
    p, g = _ref_normalize(pred).split(), _ref_normalize(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(g)
    return 2 * prec * rec / (prec + rec)


def test_f1_equals_the_squad_reference_on_random_strings():
    rng = random.Random(0)
    vocab = ["the", "a", "an", "Paris", "paris,", "cat", "dog.", "New", "York", "big", "!", "red-ish", "x"]
    for _ in range(500):
        pred = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 6)))
        golds = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
        got = SCORERS["f1"].fn(_x(pred, golds))
        assert got["f1"] == pytest.approx(max(_ref_f1(pred, g) for g in golds))
        assert got["correct"] == any(_ref_normalize(pred) == _ref_normalize(g) for g in golds)


def test_numeric_tolerance_equals_numpy_isclose():
    rng = np.random.default_rng(0)
    for _ in range(500):
        gold = round(float(rng.normal(0, 100)), 2)
        pred = round(gold + float(rng.normal(0, 2)), 3)
        rtol, atol = float(rng.choice([0, 0.001, 0.01, 0.1])), float(rng.choice([0, 0.01, 0.5, 2]))
        got = SCORERS["numeric"].fn(_x(str(pred), str(gold), params={"rel_tol": rtol, "abs_tol": atol}))
        assert got["correct"] == bool(np.isclose(pred, gold, rtol=rtol, atol=atol)), (pred, gold, rtol, atol)
    assert SCORERS["numeric"].fn(_x("3.50", "3.5"))["correct"]
    assert SCORERS["numeric"].fn(_x(None, "3", output="no number"))["parse_ok"] is False
    assert SCORERS["numeric"].fn(_x(None, "18", output="It is 18 eggs.", rule="none"))["correct"]


def test_contains_is_whole_word_or_phrase_and_respects_an_explicit_statement():
    c = SCORERS["contains"].fn
    assert c(_x(None, "Paris", output="The capital city of France is Paris.", rule="last_line"))["correct"]
    assert not c(_x(None, "Paris", output="Parisian food is great.", rule="last_line"))["correct"]
    assert c(_x(None, "New York", output="I love new york, truly", rule="last_line"))["correct"]
    assert not c(_x("lyon", "Paris", output="The answer is Lyon. Paris is nice."))["correct"]
    assert c(_x("the city of paris", "Paris", output="The answer is the city of Paris."))["correct"]
    empty = c(_x(None, "Paris", output="", rule="none"))
    assert empty == {"correct": False, "parse_ok": False}


def test_regex_choice_letter_exact_and_user():
    assert SCORERS["regex"].fn(_x("colour", r"colou?r"))["correct"]
    assert not SCORERS["regex"].fn(_x("colours", r"colou?r"))["correct"]  # whole answer
    assert not SCORERS["regex"].fn(_x("Color", r"color", params={"case_sensitive": True}))["correct"]
    cl = SCORERS["choice_letter"].fn
    assert cl(_x("B", "(b)"))["correct"] and cl(_x("A", 0))["correct"] and not cl(_x("C", "B"))["correct"]
    assert cl(_x(None, "B"))["parse_ok"] is False
    assert SCORERS["exact"].fn(_x("18", "18", gold_norm="18"))["correct"]
    assert not SCORERS["exact"].fn(_x(None, None, gold_norm=None))["correct"]


def test_every_scorer_declares_its_columns_and_aggregates():
    cols = set(row_columns())
    for s in SCORERS.values():
        assert set(s.columns) <= cols
        assert {a.source for a in s.aggregates} <= set(s.columns)
    assert len({a.column for a in all_aggregates()}) == len(all_aggregates())


def _task_file(tmp_path, **over):
    import yaml

    spec = {"name": "capitals", "source": {"path": "capitals.jsonl"}, "fields": {"question": "q"},
            "gold_field": "a", "template": "cap.j2", "answer_type": "text", **over}
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "capitals.jsonl").write_text(
        '{"q": "France", "a": "Paris"}\n{"q": "Peru", "a": "Lima"}\n{"q": "Japan", "a": "Tokyo"}\n')
    (tmp_path / "cap.j2").write_text("{% block input %}What is the capital of {{ question }}?{% endblock %}\n")
    path = tmp_path / "capitals.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_task_chooses_contains_in_yaml_and_gets_a_meaningful_parse_failure_rate(tmp_path):
    path = _task_file(tmp_path, scorer="contains")
    replies = iter(["The capital city of France is Paris.", "", "Kyoto was the old capital, not Tokyo? Tokyo."])
    df = harness.run([str(path)], ["zero_shot"], backend=ScriptedBackend(lambda r: next(replies)), latency_probe=0,
                     data_dir=tmp_path / "data", out=tmp_path / "r", progress=False, write_report=False)
    df = df.sort_values("example_id")
    assert df["correct"].tolist() == [True, False, True]
    s = summarize(df).iloc[0]
    assert s["parse_fail_rate"] == pytest.approx(1 / 3) and s["accuracy"] == pytest.approx(2 / 3)
    assert df["extract_rule"].notna().all()


def test_f1_task_has_an_f1_mean_in_the_summary(tmp_path):
    path = _task_file(tmp_path, scorer="f1")
    df = harness.run([str(path)], ["zero_shot"], backend=ScriptedBackend(lambda r: "The answer is Paris France."),
                     data_dir=tmp_path / "data", out=tmp_path / "r", progress=False, write_report=False)
    s = summarize(df).iloc[0]
    assert s["f1_mean"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert "f1" in pd.read_parquet(tmp_path / "r" / "predictions.parquet").columns


def test_user_scorer_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_scorers.py").write_text(
        "def first_letter(answer, gold, output):\n    return bool(answer) and answer[0] == str(gold)[0].lower()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _task_file(tmp_path, scorer="user", scorer_params={"function": "my_scorers:first_letter"})
    df = harness.run([str(path)], ["zero_shot"], backend=ScriptedBackend(lambda r: "The answer is pluto."),
                     data_dir=tmp_path / "data", out=tmp_path / "r", progress=False, write_report=False)
    assert df.sort_values("example_id")["correct"].tolist() == [True, False, False]


@pytest.mark.parametrize("over,field", [
    ({"scorer": "containz"}, "scorer"),
    ({"scorer": "choice_letter"}, "scorer"),
    ({"scorer": "numeric", "scorer_params": {"rel_tol": -1}}, "scorer_params"),
    ({"scorer": "numeric", "scorer_params": {"tolerance": 1}}, "scorer_params.tolerance"),
    ({"scorer": "user"}, "scorer_params.function"),
    ({"scorer": "user", "scorer_params": {"function": "no_such_module_xyz:f"}}, "scorer_params.function"),
])
def test_bad_scorer_settings_are_one_line_errors(tmp_path, over, field):
    path = _task_file(tmp_path, **over)
    with pytest.raises(ConfigError) as e:
        harness.load_task(str(path), data_dir=tmp_path / "data")
    assert e.value.field == field and str(path) in e.value.one_line()


def test_extraction_both_reports_strict_and_flexible(tmp_path):
    path = _task_file(tmp_path, answer_type="number", extraction="both")
    (tmp_path / "data" / "capitals.jsonl").write_text('{"q": "1", "a": 18}\n{"q": "2", "a": 7}\n')
    replies = iter(["The answer is 18.", "So 3 + 4 = 7"])
    df = harness.run([str(path)], ["zero_shot"], backend=ScriptedBackend(lambda r: next(replies)), latency_probe=0,
                     data_dir=tmp_path / "data", out=tmp_path / "r", progress=False, write_report=False)
    df = df.sort_values("example_id")
    assert df["correct"].tolist() == [True, True] and df["correct_strict"].tolist() == [True, False]
    assert df["extract_rule"].tolist() == ["answer_is", "last_number"]
    s = summarize(df).iloc[0]
    assert s["accuracy"] == 1.0 and s["accuracy_strict"] == 0.5


def test_self_consistency_votes_strict_answers_apart_and_records_the_winner_rule(tmp_path):
    path = _task_file(tmp_path, answer_type="number", extraction="both")
    (tmp_path / "data" / "capitals.jsonl").write_text('{"q": "1", "a": 7}\n')
    samples = ["So 3 + 4 = 7", "So 3 + 4 = 7", "The answer is 8.", "so 7"]
    df = harness.run([str(path)], ["self_consistency:k=4"], backend=ScriptedBackend(lambda r: list(samples)),
                     data_dir=tmp_path / "data", out=tmp_path / "r", progress=False, write_report=False)
    row = df.iloc[0]
    assert row["answer"] == "7" and row["extract_rule"] == "last_number" and row["correct"]
    assert row["answer_strict"] == "8" and row["extract_rule_strict"] == "answer_is" and not row["correct_strict"]
