"""The runner's fast paths (bench P5) give the same files as the slow ones they replaced.

- finalize builds the tables from the entries it just journaled instead of reading the journal back;
- Sampling.as_dict no longer goes through dataclasses.asdict;
- few-shot exemplar blocks are rendered once per (task, exemplar).
"""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd

import harness
from harness.backends.scripted import ScriptedBackend
from harness.records import Sampling
from harness.runs.results import Journal, frames_from_journal, write_frame_atomic
from harness.runs.units import build_units
from harness.strategy.prompt_layout import _SHOT_BLOCKS
from harness.strategy.strategies import parse_strategy
from harness.task.tasks import load_task

TASKS = ["coin_flip", "person_json", "multistep_arithmetic", "last_letter_concat"]
STRATEGIES = ["zero_shot", "few_shot:k=3", "self_consistency:k=3"]


def _answer(req):
    if "person_json" in req.key:
        return ['{"first_name": "Ann", "last_name": "Lee", "age": 3, "hobby": "chess"}'] * req.sampling.n
    return ["The answer is 7.", "The answer is yes.", "no"][: req.sampling.n]


def _same_as_journal(run_dir, tmp_path):
    preds, samples = frames_from_journal(Journal(run_dir / "journal.jsonl").read())
    write_frame_atomic(preds, tmp_path / "p.parquet")
    write_frame_atomic(samples, tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "predictions.parquet"), pd.read_parquet(tmp_path / "p.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "samples.parquet"), pd.read_parquet(tmp_path / "s.parquet"))
    return preds


def test_tables_from_memory_equal_tables_from_the_journal(tmp_path):
    out = tmp_path / "run"
    backend = ScriptedBackend(_answer)
    harness.run(TASKS[:3], STRATEGIES, backend=backend, limit=5, out=out, progress=False, write_report=False,
                cache=False)
    assert len(_same_as_journal(out, tmp_path)) == 3 * 3 * 5
    # resumed with more examples and one more task: old entries + new entries
    harness.run(TASKS, STRATEGIES, backend=backend, limit=8, out=out, progress=False, write_report=False,
                cache=False)
    assert len(_same_as_journal(out, tmp_path)) == 4 * 3 * 8


def test_sampling_as_dict_matches_asdict():
    s = Sampling(temperature=0.7, top_k=40, seed=3, stop=("\n", "Q:"), n=8, logprobs=True)
    expected = asdict(s)
    expected["stop"] = list(s.stop)
    assert s.as_dict() == expected
    assert list(s.as_dict()) == list(expected)  # same key order


def test_cached_exemplar_blocks_give_the_same_prompts():
    task = load_task("multistep_arithmetic")
    strat = parse_strategy("few_shot:k=4,selection=random")
    first = [u.requests for u in build_units([task], [strat], limit=6, seed=0)]
    _SHOT_BLOCKS.clear()
    again = [u.requests for u in build_units([task], [strat], limit=6, seed=0)]
    assert first == again
    other = load_task("multistep_arithmetic")  # another Task object: its own cache entries
    assert [u.requests for u in build_units([other], [strat], limit=6, seed=0)] == first
