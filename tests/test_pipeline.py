"""Fast unit tests of the pure parts (extraction, strategies, scoring, stats, store) with a scripted backend."""
from __future__ import annotations

import itertools
import json
import random
import re

import pandas as pd
import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.scoring.extract import extract_choice, extract_json, extract_label, extract_number, extract_text
from harness.records import Sample
from harness.runs.results import Journal
from harness.reports.stats import maj_at_k_exact, summarize, wilson_ci
from harness.strategy.strategies import parse_strategy
from harness.strategy.voting import vote
from harness.task.exemplars import select_exemplars


# -- extraction: formats the bundled model really produces ---------------------------------
@pytest.mark.parametrize("text,want", [
    ("The answer is 42.", "42"),
    ("First 3 + 4 = 7. Then 7 * 2 = 14. The answer is 14.", "14"),
    ("Janet makes $1,234.50 a day.\n#### 1234.5", "1234.5"),
    ("So the total is 18 dollars.", "18"),
    ("**Answer:** -7", "-7"),
    ("The answer is 3.0", "3"),
    ("no digits here", None),
])
def test_extract_number(text, want):
    assert extract_number(text) == want


@pytest.mark.parametrize("text,want", [
    ("The answer is B.", "B"), ("Answer: (C)", "C"), ("D. Because plants", "D"),
    ("I think the answer is (A) sunlight", "A"), ("none of these", None),
])
def test_extract_choice(text, want):
    assert extract_choice(text) == want


@pytest.mark.parametrize("text,want", [
    ("The answer is yes.", "yes"), ("No, the coin is tails up. The answer is no.", "no"),
    ("Yes.", "yes"), ("The coin was flipped once, so it is tails up. So, no.", "no"), ("maybe", None),
])
def test_extract_label(text, want):
    assert extract_label(text, ["yes", "no"]) == want


def test_extract_text_and_json():
    assert extract_text('The last letters are n and k. The answer is "nk".') == "nk"
    assert extract_json('Sure! ```json\n{"a": 1}\n```')[0] == {"a": 1}
    assert extract_json('Here: {"a": {"b": "}"}} trailing')[0] == {"a": {"b": "}"}}
    assert extract_json("not json {") == (None, False)


# -- strategies ---------------------------------------------------------------------------
def test_few_shot_has_exactly_k_exemplars_and_never_the_item():
    task = harness.load_task("coin_flip")
    # use the task's own items as the pool to make the "never the item" rule bite
    pool_task = type(task)(spec=task.spec.model_copy(update={"fewshot": None}), file=task.file,
                           template_folders=task.template_folders)
    for ex in pool_task.examples[:20]:
        for sel in ("first", "random", "balanced"):
            shots = select_exemplars(pool_task, ex, k=4, selection=sel, seed=0)
            assert len(shots) == 4
            assert all(s.id != ex.id for s in shots)
        req = parse_strategy("few_shot:k=4").expand(pool_task, ex)[0]
        user = req.messages[-1].content
        assert user.count("Q: ") == 5  # 4 exemplars + the item
        assert user.count(ex.fields["question"]) == 1 and user.rstrip().endswith(ex.fields["question"])


def test_shared_prefix_is_byte_identical_across_examples():
    task = harness.load_task("multistep_arithmetic")
    s = parse_strategy("few_shot:k=5")
    a, b = (s.expand(task, ex)[0].messages[-1].content for ex in task.examples[:2])
    common = len(next(iter([x for x in [a[:i] for i in range(len(a), 0, -1)] if b.startswith(x)]), ""))
    assert common > 0.8 * min(len(a), len(b)) - 40  # only the item differs, at the end


@pytest.mark.parametrize("spec,field", [
    ("few_shoot", "--strategy"), ("few_shot:k=-1", "k"), ("few_shot:kk=3", "kk"), ("cot:temperature=-1", "temperature"),
    ("zero_shot:top_p=1.5", "top_p"), ("zero_shot:top_p=0", "top_p"), ("few_shot:selection=best", "selection"),
    ("self_consistency:k=-2", "k"), ("zero_shot:guided=maybe", "guided"), ("zero_shot:max_tokens", "max_tokens"),
])
def test_bad_strategy_specs(spec, field):
    with pytest.raises(harness.ConfigError) as info:
        parse_strategy(spec)
    assert info.value.field == field
    assert "\n" not in info.value.one_line()


def test_vote_and_tie_rule():
    s = lambda i, a, lp=None: Sample(i, "", a, a is not None, 10, lp, "stop")  # noqa: E731
    assert vote([s(0, "1"), s(1, "2"), s(2, "2")])[0::2] == ("2", "majority")
    assert vote([s(0, "1", -5.0), s(1, "2", -1.0)])[0::2] == ("2", "logprob")
    assert vote([s(0, "1"), s(1, "2")])[0::2] == ("1", "first")
    assert vote([s(0, None), s(1, None)])[0] is None


# -- maj@k: exact estimator vs brute force ---------------------------------------------------
def brute_maj_at_k(answers, gold, k):
    total = 0.0
    subsets = list(itertools.combinations(range(len(answers)), k))
    for sub in subsets:
        counts = {}
        for i in sub:
            if answers[i] is not None:
                counts[answers[i]] = counts.get(answers[i], 0) + 1
        if not counts:
            continue
        top = max(counts.values())
        winners = [a for a, c in counts.items() if c == top]
        total += (gold in winners) / len(winners)
    return total / len(subsets)


def test_maj_at_k_matches_brute_force_on_random_data():
    rng = random.Random(0)
    for _ in range(150):
        n = rng.randint(1, 9)
        answers = [rng.choice(["1", "2", "3", None, "1"]) for _ in range(n)]
        gold = rng.choice(["1", "2", "4"])
        for k in range(1, n + 1):
            assert maj_at_k_exact(answers, gold, k) == pytest.approx(brute_maj_at_k(answers, gold, k), abs=1e-12)


def test_wilson_ci_matches_statsmodels_reference_values():
    lo, hi = wilson_ci(7, 20)
    assert lo == pytest.approx(0.1812, abs=1e-3) and hi == pytest.approx(0.5671, abs=1e-3)


# -- the runner end to end on a scripted backend -------------------------------------------
def _answering(correct_every: int = 2):
    counter = itertools.count()

    def fn(req):
        i = next(counter)
        q = req.messages[-1].content
        m = re.findall(r"What is (.+)\?", q)
        val = eval(m[-1]) if m else 0  # the test's own generated arithmetic, not model or user data
        return f"The answer is {val if i % correct_every == 0 else val + 1}."
    return fn


def test_run_writes_the_three_files_with_the_columns(tmp_path):
    backend = ScriptedBackend(_answering(2))
    df = harness.run(["multistep_arithmetic"], ["zero_shot", "few_shot:k=2"], backend=backend, limit=10,
                     out=tmp_path / "r", progress=False, write_report=False, latency_probe=3)
    # one batched call per (task, strategy) group, then the probe: a warm-up and 3 items per group, one at a time
    assert backend.calls == [10, 10] + [1] * 7
    run_dir = tmp_path / "r"
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    need = ["run_id", "task", "strategy", "model", "example_id", "template", "template_hash", "prompt_tokens",
            "completion_tokens", "batch_latency_s", "engine_s_share", "output", "answer", "gold", "correct",
            "parse_ok"]
    assert set(need) <= set(preds.columns) and len(preds) == 20 and len(df) == 20
    probes = pd.read_parquet(run_dir / "probes.parquet")
    assert len(probes) == 6 and probes["probe"].all() and "correct" not in probes
    # the groups take turns, item by item
    assert probes.sort_values("wave")["strategy"].tolist() == ["zero_shot", "few_shot:k=2"] * 3
    summary = pd.read_csv(run_dir / "summary.csv")
    assert set(["n", "accuracy", "ci_low", "ci_high", "parse_fail_rate", "mean_prompt_tokens",
                "mean_completion_tokens", "batch_latency_mean_s", "total_tokens", "engine_s_per_example",
                "tokens_per_s", "probe_latency_p50_s", "probe_latency_p95_s", "probe_ttft_p50_s",
                "probe_ttft_p95_s"]) <= set(summary.columns)
    # the group's engine time is the sum of its rows' shares
    shares = preds.groupby("strategy")["engine_s_share"].sum()
    assert summary.set_index("strategy")["engine_s_total"].to_dict() == pytest.approx(shares.to_dict())
    assert summary["accuracy"].tolist() == [0.5, 0.5]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete" and meta["versions"]["python"]


def test_resume_runs_only_the_rest_and_never_duplicates(tmp_path):
    out = tmp_path / "r"
    harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(lambda r: "The answer is yes."),
                limit=6, out=out, progress=False, write_report=False, latency_probe=0)
    backend = ScriptedBackend(lambda r: "The answer is no.")
    df = harness.run(["coin_flip"], ["zero_shot"], backend=backend, limit=10, out=out, progress=False,
                     write_report=False, latency_probe=0)
    assert backend.calls == [4]
    assert len(df) == 10 and not df.duplicated(["task", "strategy", "model", "example_id"]).any()
    meta = json.loads((out / "run.json").read_text())
    assert meta["resumes"] and meta["resumes"][-1]["already_done"] == 6


def test_journal_ignores_a_torn_last_line(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    row = {"task": "t", "strategy": "s", "model": "m", "example_id": "1"}
    j.append([{"p": row, "s": []}])
    with open(j.path, "a") as f:
        f.write('{"p": {"task": "t", "strat')  # a kill mid-write
    assert len(j.read()) == 1
    j.append([{"p": {**row, "example_id": "2"}, "s": []}])
    assert len(j.read()) == 2


def test_self_consistency_one_request_with_n_and_samples_table(tmp_path):
    answers = itertools.cycle(["The answer is yes.", "The answer is no.", "The answer is yes.", "I am not sure."])
    backend = ScriptedBackend(lambda r: [next(answers) for _ in range(r.sampling.n)])
    harness.run(["coin_flip"], ["self_consistency:k=4"], backend=backend, limit=5, out=tmp_path / "r",
                progress=False, write_report=False, latency_probe=0)
    assert backend.calls == [5]
    samples = pd.read_parquet(tmp_path / "r" / "samples.parquet")
    assert len(samples) == 20 and set(samples["sample_idx"]) == {0, 1, 2, 3}
    preds = pd.read_parquet(tmp_path / "r" / "predictions.parquet")
    assert all(json.loads(v) == {"yes": 2, "no": 1} for v in preds["votes"])
    assert preds["agreement"].round(4).eq(round(2 / 3, 4)).all()
    majk = pd.read_csv(tmp_path / "r" / "majk.csv")
    assert majk["k"].tolist() == [1, 2, 3, 4]


def test_errors_are_not_wrong_answers():
    preds = pd.DataFrame({"task": "t", "strategy": "s", "model": "m", "example_id": ["1", "2", "3"],
                          "correct": [True, None, False], "parse_ok": [True, False, True],
                          "error": [None, "HTTP 500", None], "prompt_tokens": 5, "completion_tokens": 2,
                          "batch_latency_s": 0.1, "batch_ttft_s": None})
    s = summarize(preds).iloc[0]
    assert s["n"] == 2 and s["accuracy"] == 0.5 and s["errors"] == 1 and s["parse_fail_rate"] == 0.0


def test_person_json_scoring_guided_and_free():
    from harness.scoring.scorers import score_json
    from harness.task.schemas import Person

    schema = Person.model_json_schema()
    gold = {"first_name": "Ada", "last_name": "Khan", "age": 40, "hobby": "chess"}
    good = score_json(json.dumps(gold), gold, schema)
    assert good == {"json_valid": True, "schema_valid": True, "field_em": True, "field_f1": 1.0}
    partial = score_json('{"first_name": "Ada", "last_name": "Khan", "age": "forty", "hobby": "chess"}', gold, schema)
    assert partial["json_valid"] and not partial["schema_valid"] and partial["field_f1"] == pytest.approx(0.75)
    assert score_json("Ada Khan, 40", gold, schema)["json_valid"] is False


def test_request_cache_answers_identical_requests_and_flags_them(tmp_path):
    first = ScriptedBackend(lambda r: "The answer is yes.")
    harness.run(["coin_flip"], ["zero_shot"], backend=first, limit=4, out=tmp_path / "a", progress=False,
                write_report=False, cache_dir=tmp_path / "cache", latency_probe=0)
    second = ScriptedBackend(lambda r: "The answer is no.")
    df = harness.run(["coin_flip"], ["zero_shot"], backend=second, limit=5, out=tmp_path / "b", progress=False,
                     write_report=False, cache_dir=tmp_path / "cache", latency_probe=0)
    assert first.calls == [4] and second.calls == [1]
    assert df["cached"].sum() == 4 and set(df[df["cached"]]["output"]) == {"The answer is yes."}
    # cached rows replay no time: they are in no latency or throughput figure of this run
    hit = df[df["cached"]]
    assert hit["batch_latency_s"].isna().all() and hit["engine_s_share"].isna().all()
    assert df.loc[~df["cached"], "engine_s_share"].notna().all()
    summary = pd.read_csv(tmp_path / "b" / "summary.csv").iloc[0]
    assert summary["cached_rows"] == 4
    assert summary["engine_s_per_example"] == pytest.approx(df.loc[~df["cached"], "engine_s_share"].iloc[0])
    third = ScriptedBackend(lambda r: "The answer is no.")
    harness.run(["coin_flip"], ["zero_shot"], backend=third, limit=5, out=tmp_path / "c", progress=False,
                write_report=False, cache=False, latency_probe=0)
    assert third.calls == [5]
