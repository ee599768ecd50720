"""Grids, exemplar draws / orders / sampling seeds and template variants on the real vLLM engine with
the bundled model (the session's `engine` fixture): one run of 48 requests."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import harness
from harness.reports.variance import anova_components

pytestmark = pytest.mark.engine


def test_grid_and_template_variant_on_the_real_engine(engine, tmp_path):
    grid = "few_shot:k=2,seed={0,1},order=shuffled,order_seed={0,1},temperature=0.8,sampling_seed={0,1}"
    df = harness.run(["coin_flip"], [grid, "zero_shot", "zero_shot:template=coin_flip_terse.j2"], backend=engine,
                     limit=5, out=tmp_path / "r", progress=False, cache=False, report=True)
    assert len(df) == 10 * 5 and df["error"].isna().all()
    tok = engine.tokenizer
    for _, row in df.iterrows():  # every variant's prompt is what the engine counted
        ids = tok.apply_chat_template(json.loads(row["prompt"]), add_generation_prompt=True, tokenize=True)
        assert row["prompt_tokens"] == len(ids["input_ids"] if hasattr(ids, "keys") else ids)
    terse = df[df["strategy"] == "zero_shot:template=coin_flip_terse.j2"]
    assert set(terse["template"]) == {"coin_flip_terse.j2"} and "Heads up at the end?" in terse["prompt"].iloc[0]
    # the decoding seed reaches the engine: the same prompt under two sampling seeds gives other samples
    a = df[df["strategy"] == "few_shot:k=2,seed=0,order=shuffled,order_seed=0,temperature=0.8,sampling_seed=0"]
    b = df[df["strategy"] == "few_shot:k=2,seed=0,order=shuffled,order_seed=0,temperature=0.8,sampling_seed=1"]
    assert a["prompt"].tolist() == b["prompt"].tolist() and a["output"].tolist() != b["output"].tolist()
    # variance.csv equals the ANOVA recomputed from the predictions
    table = pd.read_csv(tmp_path / "r" / "variance.csv").set_index("component")
    assert table.loc["draw", "levels"] == 2 and table.loc["order", "levels"] == 2 and table.loc["sampling", "levels"] == 2
    y = np.zeros((5, 2, 2, 2))
    for d in range(2):
        for o in range(2):
            for s in range(2):
                spec = f"few_shot:k=2,seed={d},order=shuffled,order_seed={o},temperature=0.8,sampling_seed={s}"
                y[:, d, o, s] = df[df["strategy"] == spec].sort_values("example_id")["correct"].astype(float)
    est = anova_components(y)
    assert table.loc["item", "variance"] == pytest.approx(max(0.0, est["item"]))
    assert table.loc[["draw", "order", "sampling"], "variance"].tolist() == pytest.approx(
        [max(0.0, v) for v in est["factors"]])
    assert "Variance by source" in (tmp_path / "r" / "report.md").read_text()
