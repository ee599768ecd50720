"""harness optimize on a scripted backend (harness/runs/optimize.py, harness/stats/selection.py): the hash split
against a hash computed here, the expected inflation against a brute-force simulation, the gap interval
against Newcombe's formula written here, the test split sealed until the winner is fixed, the order in which
items are read, the budget, resume, and the winner's pinned spec rendering the prompts that were measured.
The real-engine check is test_optimize_engine.py."""
from __future__ import annotations

import hashlib
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from skilled_answers import skilled_answer
import harness.api as api
from harness.backends.scripted import ScriptedBackend
from harness.errors import ConfigError
from harness.runs.optimize import (OptimizeSpec, SplitSealed, open_folder, open_test_split, plan_search,
                                   select_winner)
from harness.runs.spec import RunSpec
from harness.stats.selection import compare_on_test, expected_inflation, gap_interval
from harness.strategy.strategies import parse_strategy
from harness.task.splits import SplitSpec, part_of, split_task
from harness.task.tasks import load_task

_answer = skilled_answer  # harness-free scripted answers (tests/skilled_answers.py)


class Recorder(ScriptedBackend):
    """Records the asked question (the last one in the prompt) of every request, in order."""

    def __init__(self, stop_at: int | None = None):
        super().__init__(_answer)
        self.asked: list[tuple[int, int]] = []
        self.stop_at = stop_at

    def generate(self, requests):
        if self.stop_at is not None and len(self.calls) + 1 == self.stop_at:
            self.calls.append(len(requests))
            raise KeyboardInterrupt
        for r in requests:
            text = "\n".join(m.content for m in r.messages) + (r.prompt or "")
            self.asked.append(tuple(map(int, re.findall(r"Which number is larger: (\d+) or (\d+)\?", text)[-1])))
        return super().generate(requests)


@pytest.fixture
def own_pool_task(tmp_path):
    """larger_number without its few-shot source: the exemplar pool is the train split."""
    text = (load_task("larger_number").file.read_text().replace("name: larger_number", "name: larger_own")
            .replace("fewshot: {generator: larger_number, params: {n: 50, seed: 2}}\n", "")
            .replace("n: 500", "n: 300"))
    assert "fewshot" not in text
    path = tmp_path / "larger_own.yaml"
    path.write_text(text)
    return str(path)


def _sha_part(item_id: str, seed: int, val: float, test: float) -> str:
    u = int(hashlib.sha256(f"split:{seed}:{item_id}".encode()).hexdigest()[:16], 16) / 2**64
    return "test" if u < test else "val" if u < test + val else "train"


def test_the_split_is_the_hash_computed_here_and_stable_when_items_are_added():
    ids = [f"item-{i}" for i in range(2000)]
    parts = [part_of(i, seed=3, val=0.3, test=0.2) for i in ids]
    assert parts == [_sha_part(i, 3, 0.3, 0.2) for i in ids]
    shares = pd.Series(parts).value_counts(normalize=True)
    assert abs(shares["test"] - 0.2) < 0.03 and abs(shares["val"] - 0.3) < 0.03
    grown = [part_of(i, seed=3, val=0.3, test=0.2) for i in ids + [f"new-{i}" for i in range(500)]]
    assert grown[:2000] == parts                     # adding items never moves an item
    assert [part_of(i, seed=4, val=0.3, test=0.2) for i in ids] != parts


def test_a_split_task_asks_its_part_and_draws_exemplars_from_train(own_pool_task):
    task = load_task(own_pool_task)
    val = split_task(task, SplitSpec(part="val", val=0.35, test=0.35, seed=0))
    ids = {e.id: _sha_part(e.id, 0, 0.35, 0.35) for e in task.examples}
    assert [e.id for e in val.examples] == [i for i, p in ids.items() if p == "val"]
    assert {e.id for e in val.pool} == {i for i, p in ids.items() if p == "train"}
    shots = parse_strategy("few_shot:k=5,seed=2").exemplars(val, val.examples[0], run_seed=0)
    assert len(shots) == 5 and all(ids[s.id] == "train" for s in shots)
    capped = split_task(task, SplitSpec(part="val", val=0.35, test=0.35, max_items=10))
    assert len(capped.examples) == 10 and {e.id for e in capped.examples} <= {e.id for e in val.examples}
    own = load_task("larger_number")                 # its own few-shot source is the pool
    assert split_task(own, SplitSpec(part="val", val=0.5, test=0.5)).pool == own.pool


def test_the_expected_inflation_matches_a_brute_force_simulation():
    rng = np.random.default_rng(11)
    for m, n, p in [(16, 100, 0.5), (4, 30, 0.7), (1, 50, 0.4)]:
        best = rng.binomial(n, p, size=(200_000, m)).max(axis=1) / n - p
        assert expected_inflation(m, n, p) == pytest.approx(best.mean(), abs=4 * best.std() / math.sqrt(len(best)) + 1e-9)
    assert 100 * expected_inflation(16, 100, 0.5) == pytest.approx(8.8, abs=0.1)  # the figure


def test_the_gap_interval_is_newcombes_written_here():
    def wilson(k, n, z=1.959963984540054):
        p = k / n
        c = (p + z * z / (2 * n)) / (1 + z * z / n)
        h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return c - h, c + h

    for k1, n1, k2, n2 in [(70, 100, 60, 100), (45, 50, 120, 200), (10, 10, 3, 20)]:
        (l1, u1), (l2, u2) = wilson(k1, n1), wilson(k2, n2)
        d = k1 / n1 - k2 / n2
        lo = d - math.sqrt((k1 / n1 - l1) ** 2 + (u2 - k2 / n2) ** 2)
        hi = d + math.sqrt((u1 - k1 / n1) ** 2 + (k2 / n2 - l2) ** 2)
        assert gap_interval(k1, n1, k2, n2) == pytest.approx((d, lo, hi), abs=1e-9)


def test_the_test_comparison_uses_the_verdicts_rules():
    w = np.array([1] * 60 + [0] * 40, bool)
    b = np.array([1] * 30 + [0] * 70, bool)             # the winner right on 30 more items
    r = compare_on_test(w, b, margin=0.05)
    assert (r["best"], r["decision"]) == ("winner", "inferior") and r["ci_low"] > 0
    assert r["diff"] == pytest.approx(0.3)
    same = compare_on_test(w, w, margin=0.05)           # identical answers: within any margin
    assert same["decision"] == "non_inferior" and same["diff"] == 0
    flip = compare_on_test(b, w, margin=0.05)           # the baseline wins on test
    assert (flip["best"], flip["decision"]) == ("baseline", "inferior") and flip["ci_high"] < 0


def _spec(**kw) -> OptimizeSpec:
    base = dict(task="larger_number", search=("few_shot:k={0,1,2,3},seed={0,1}",), preset="light",
                run={"cache": False})
    return OptimizeSpec.build(**{**base, **kw})


def test_the_test_split_is_sealed_until_the_winner_is_fixed(tmp_path):
    spec = _spec()
    plan = plan_search(spec, out=tmp_path)
    open_folder(tmp_path, spec, plan)
    with pytest.raises(SplitSealed, match="only after the winner is fixed"):
        open_test_split(tmp_path)                        # no selection yet
    with pytest.raises(ValueError, match="read only after selection"):
        SplitSpec(part="test", val=0.5, test=0.5)        # a test split names the selected strategies
    with pytest.raises(ConfigError, match="read only for the strategies selected"):
        RunSpec.build(tasks=("larger_number",), strategies=("few_shot:k=3",),
                      split=SplitSpec(part="test", val=0.5, test=0.5, selected=("zero_shot",)))
    preds = api.run_spec(plan.val_spec, backend=ScriptedBackend(_answer), progress=False)
    select_winner(tmp_path, plan, preds)
    opened = open_test_split(tmp_path)               # now it opens, for the winner and the baseline only
    assert opened.split.part == "test" and set(opened.strategies) == {opened.strategies[0], "zero_shot"}


def _run(out, backend=None, **kw):
    kw = {"search": ["few_shot:k={0,1,2,3},seed={0,1}"], "preset": "light", "cache": False, **kw}
    return api.optimize("larger_number", backend=backend or Recorder(), out=out, progress=False, **kw)


def test_val_is_read_by_every_candidate_then_test_once_by_the_winner_and_the_baseline(tmp_path):
    backend = Recorder()
    table = _run(tmp_path / "opt", backend)
    task = load_task("larger_number")
    part = {e.id: _sha_part(e.id, 0, 0.5, 0.5) for e in task.examples}
    val = [e for e in task.examples if part[e.id] == "val"]
    keep = sorted(val, key=lambda e: int(hashlib.sha256(f"split:0:{e.id}".encode()).hexdigest()[:16], 16))[:100]
    test = [e for e in task.examples if part[e.id] == "test"]
    pair = lambda e: (int(e.fields["a"]), int(e.fields["b"]))  # noqa: E731
    n_val = 8 * 100
    assert len(backend.asked) == n_val + 2 * len(test)
    assert set(backend.asked[:n_val]) == {pair(e) for e in keep}      # val first, the capped part
    assert set(backend.asked[n_val:]) == {pair(e) for e in test}      # then test
    result = table.attrs["result"]
    assert result["winner"] in {f"few_shot:k={k},seed={s}" for k in (2, 3) for s in (0, 1)}
    assert result["val_n"] == 100 and result["test_n"] == len(test)
    saved = pd.read_csv(tmp_path / "opt" / "optimize.csv")
    assert (saved["role"] == "candidate").sum() == 7 and (saved["role"] == "winner").sum() == 1
    assert saved.loc[saved.role == "winner", "val_accuracy"].item() == saved["val_accuracy"].max()
    run_json = json.loads((tmp_path / "opt" / "val" / "run.json").read_text())
    assert run_json["spec"]["split"]["val"] == 0.5 and run_json["spec"]["split"]["max_items"] == 100
    assert result["expected_inflation"] == pytest.approx(
        expected_inflation(8, 100, saved.loc[saved.role != "baseline", "val_accuracy"].mean()))
    assert "expected from selection" in result["sentence"]


def test_the_pinned_winner_renders_the_prompts_that_were_measured(tmp_path, own_pool_task):
    table = api.optimize(own_pool_task, ["few_shot:k=3,seed={0,1},order=shuffled"], backend=Recorder(),
                         out=tmp_path / "opt", progress=False, cache=False, preset="light")
    r = table.attrs["result"]
    assert "exemplars=" in r["pinned_spec"] and "seed=" not in r["pinned_spec"].replace("sampling_seed", "")
    full = load_task(own_pool_task)                  # the whole task: the pool is every item
    val = pd.read_parquet(tmp_path / "opt" / "val" / "predictions.parquet")
    rows = val[val.strategy == r["winner"]].set_index("example_id")
    pinned = parse_strategy(r["pinned_spec"])
    by_id = {e.id: e for e in full.examples}
    for item in list(rows.index)[:20]:
        req = pinned.expand(full, by_id[item], run_seed=0)[0]
        assert [{"role": m.role, "content": m.content} for m in req.messages] == json.loads(rows.loc[item, "prompt"])
    assert set(r["exemplar_ids"]) <= {e.id for e in full.examples}
    assert (tmp_path / "opt" / "optimized.j2").read_text() == full.template.path.read_text()


def test_the_budget_counts_requests_and_picks_a_seeded_subset(tmp_path):
    spec = _spec(budget=350)                          # 3 candidates of 100 val requests fit
    plan = plan_search(spec)
    assert len(plan.chosen) == 3 and sum(plan.costs.values()) <= 350
    assert plan_search(spec).chosen == plan.chosen and plan_search(_spec(budget=350, seed=5)).chosen != plan.chosen
    assert len(plan_search(_spec(preset="light", search=("few_shot:k={0..3},seed={0..3}",))).chosen) == 8
    with pytest.raises(ConfigError, match="below one candidate"):
        plan_search(_spec(budget=99))


def test_an_interrupted_optimisation_resumes_to_the_same_result(tmp_path):
    whole = _run(tmp_path / "whole").attrs["result"]
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", Recorder(stop_at=3))
    again = api.optimize(resume=tmp_path / "cut", backend=Recorder(), progress=False).attrs["result"]
    keys = ("winner", "val_accuracy", "test_accuracy", "gap", "expected_inflation")
    assert {k: again[k] for k in keys} == {k: whole[k] for k in keys}
    assert again["test_comparison"] == whole["test_comparison"]


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    _run(tmp_path / "opt")
    with pytest.raises(ConfigError, match=r"other settings \(seed\)"):
        _run(tmp_path / "opt", seed=1)


def test_the_bench_null_simulation_passes_its_checks():
    from bench.optimize import report, simulate

    r = simulate(runs=1000, m=16, n_val=100, n_test=100, p=0.5, seed=0)
    assert 100 * r["inflation_mean"] == pytest.approx(8.8, abs=1.0)
    assert all(ok for *_, ok in report(r)), report(r)
    biased = simulate(runs=1000, m=16, n_val=100, n_test=100, p=0.5, seed=0) | {"test_bias": 0.02}
    assert not all(ok for *_, ok in report(biased))      # the check can fail


def test_pinned_exemplars_are_shown_in_the_given_order_and_checked():
    task = load_task("larger_number")
    ids = [task.pool[7].id, task.pool[2].id]
    shots = parse_strategy(f"few_shot:k=2,exemplars={ids[0]}|{ids[1]}").exemplars(task, task.examples[0], run_seed=0)
    assert [s.id for s in shots] == ids
    with pytest.raises(ConfigError, match="not in the task's few-shot pool"):
        parse_strategy("few_shot:k=1,exemplars=nope").exemplars(task, task.examples[0], run_seed=0)
    with pytest.raises(ConfigError, match="k=3 but 2 exemplar ids"):
        parse_strategy(f"few_shot:k=3,exemplars={ids[0]}|{ids[1]}").exemplars(task, task.examples[0], run_seed=0)
