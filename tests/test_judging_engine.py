"""The judge pass on the real engine (the session's `engine`, the bundled model): `model: bundled` reuses
the run's engine (no second engine), every guided verdict parses (checked here with json and jsonschema,
not the harness's parser), and the judge's tokens are the tokenizer's count of its own prompt."""
from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

import harness
from harness.scoring.judge import DEFAULT_SCHEMA

pytestmark = pytest.mark.engine


def test_bundled_judge_reuses_the_run_engine_and_every_verdict_parses(engine, tmp_path, monkeypatch):
    from harness.runs import judging

    def no_second_engine(spec, where=None):
        raise AssertionError(f"a second judge backend was built for {spec}")

    monkeypatch.setattr(judging.Judges, "_build", staticmethod(no_second_engine))
    # capital_judged only: explain_why also judges its 48-item calibration set (minutes on 2 busy cores)
    df = harness.run(["capital_judged"], ["zero_shot"], backend=engine, limit=4, out=tmp_path / "r",
                     progress=False, cache=False, latency_probe=0)
    assert len(df) == 4 and df["error"].isna().all()
    validator = Draft202012Validator(DEFAULT_SCHEMA)
    tok = engine.tokenizer
    for _, row in df.iterrows():
        verdict = json.loads(row["judge_output"])  # guided decoding: always one JSON object
        assert validator.is_valid(verdict)
        assert row["judge_parse_ok"] and row["judge_verdict"] in ("pass", "fail")
        assert row["judge_pass"] == (verdict["score"] >= 4) and row["correct"] == row["judge_pass"]
        ids = tok.apply_chat_template(json.loads(row["judge_prompt"]), add_generation_prompt=True, tokenize=True)
        assert row["judge_prompt_tokens"] == len(ids["input_ids"] if hasattr(ids, "keys") else ids)
        assert row["judge_prompt_tokens"] != row["prompt_tokens"]
    assert df["rule_correct"].notna().all()
    assert (tmp_path / "r" / "judge.csv").is_file()
