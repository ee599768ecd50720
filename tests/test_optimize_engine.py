"""harness optimize on the real engine (the bundled model): 2 candidates, 16 val items, a 60-item generated task.
The figures of the report are recomputed here from the two run folders' predictions; a second call with the
same folder resumes and sends nothing."""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

import harness.api as api
from harness.task.tasks import load_task

pytestmark = pytest.mark.engine


def test_optimize_on_the_engine_reports_what_its_runs_hold(engine, tmp_path):
    text = load_task("larger_number").file.read_text().replace("name: larger_number", "name: larger_60") \
        .replace("params: {n: 500, seed: 1}", "params: {n: 60, seed: 1}")
    task = tmp_path / "larger_60.yaml"
    task.write_text(text)
    out = tmp_path / "opt"
    kw = dict(search=["few_shot:k={0,1}"], val_items=16, preset="light", cache=False, progress=False)
    table = api.optimize(str(task), backend=engine, out=out, **kw)
    r = table.attrs["result"]
    val = pd.read_parquet(out / "val" / "predictions.parquet")
    test = pd.read_parquet(out / "test" / "predictions.parquet")
    ids = [e.id for e in load_task(str(task)).examples]
    in_test = [i for i in ids if int(hashlib.sha256(f"split:0:{i}".encode()).hexdigest()[:16], 16) / 2**64 < 0.5]
    assert set(test["example_id"]) == set(in_test) and not set(val["example_id"]) & set(in_test)
    assert set(val["strategy"]) == {"few_shot:k=0", "few_shot:k=1"} and val.groupby("strategy").size().eq(16).all()
    assert set(test["strategy"]) == {r["winner"], "zero_shot"}
    mine = val[val.strategy == r["winner"]]["correct"].astype(float).mean()
    assert r["val_accuracy"] == pytest.approx(mine)
    assert r["val_accuracy"] == pytest.approx(val.assign(c=val["correct"].astype(float)).groupby("strategy")["c"].mean().max())
    assert r["test_accuracy"] == pytest.approx(test[test.strategy == r["winner"]]["correct"].astype(float).mean())
    assert r["gap"] == pytest.approx(r["val_accuracy"] - r["test_accuracy"])
    assert "expected from selection" in r["sentence"]
    again = api.optimize(str(task), backend=engine, out=out, **kw).attrs["result"]
    assert again["sentence"] == r["sentence"]
    assert json.loads((out / "test" / "run.json").read_text())["engine_started"] is False  # nothing re-sent
