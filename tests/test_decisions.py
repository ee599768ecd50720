"""decisions.csv and the verdicts written from it (issue 22): the larger_number case, non-inferiority at
a 5-point margin, constant answers, interval/test agreement on every row, and items_needed against a
simulation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import mcnemar

from harness.reports.decisions import COLUMNS, constant_cells, decision_table
from harness.reports.paired import pairs_table
from harness.reports.verdicts import verdicts
from harness.stats.decisions import decide, items_needed
from harness.stats.paired import score_interval


def _preds(cells: dict[str, np.ndarray], task="larger_number", model="M") -> pd.DataFrame:
    return pd.DataFrame([{"task": task, "model": model, "strategy": s, "example_id": str(i), "correct": bool(c),
                          "error": None, "answer": str(i), "gold": str(i)}
                         for s, v in cells.items() for i, c in enumerate(v)])


def _summary(preds: pd.DataFrame, tokens: dict[str, float]) -> pd.DataFrame:
    g = preds.groupby(["task", "model", "strategy"], as_index=False)["correct"].agg(["mean", "size"]).reset_index()
    return pd.DataFrame({"task": g["task"], "model": g["model"], "strategy": g["strategy"], "n": g["size"],
                         "accuracy": g["mean"], "ci_low": 0.0, "ci_high": 1.0,
                         "mean_prompt_tokens": g["strategy"].map(tokens), "mean_completion_tokens": 0.0})


def larger_number_case() -> tuple[pd.DataFrame, pd.DataFrame]:
    """SC 72 %, few_shot 60 %, cot 48 %, zero_shot 40 % at n = 50; cot vs SC: 19 items only SC got, 7 only cot."""
    sc = np.array([1] * 17 + [1] * 19 + [0] * 7 + [0] * 7, bool)
    cot = np.array([1] * 17 + [0] * 19 + [1] * 7 + [0] * 7, bool)
    rng = np.random.default_rng(4)
    few, zero = np.zeros(50, bool), np.zeros(50, bool)
    few[rng.permutation(50)[:30]] = True
    zero[rng.permutation(50)[:20]] = True
    preds = _preds({"self_consistency:k=5": sc, "few_shot:k=3": few, "cot": cot, "zero_shot": zero})
    tokens = {"self_consistency:k=5": 750.0, "few_shot:k=3": 220.0, "cot": 150.0, "zero_shot": 60.0}
    return preds, _summary(preds, tokens)


def test_larger_number_cot_is_never_recommended():
    preds, summary = larger_number_case()
    pairs = pairs_table(preds)
    row = pairs[(pairs["strategy_a"] == "self_consistency:k=5") & (pairs["strategy_b"] == "cot")].iloc[0]
    assert row["p_mcnemar"] == pytest.approx(mcnemar([[17, 19], [7, 7]], exact=False, correction=False).pvalue)
    assert 0.015 < row["p_mcnemar"] < 0.025 and row["p_holm"] > 0.05  # raw p about 0.02; Holm over 6 lifts it
    dec = decision_table(summary, pairs, margin=0.05)
    assert list(dec.columns) == COLUMNS
    d = dec.set_index("cell")
    assert d.loc["self_consistency:k=5", "decision"] == "best"
    assert d.loc["cot", "decision"] in ("inconclusive", "inferior")
    assert d.loc["cot", "diff"] == pytest.approx(-0.24) and d.loc["cot", "level"] == pytest.approx(1 - 0.05 / 6)
    (v,) = verdicts(summary, pairs, dec)
    assert v["best"] == "self_consistency:k=5" and v["cheapest"] != "cot"
    assert v["cheapest"] in d.index[d["decision"].isin(["best", "non_inferior"])]
    assert "within 5 points of the best" in v["text"] and "cheapest strategy shown" not in v["text"].replace(
        "No cheaper", "")
    print(v["text"])


def test_two_strategies_agreeing_on_980_of_1000_are_non_inferior_at_5_points():
    a = np.zeros(1000, bool)
    a[:600] = True
    b = a.copy()
    b[600:610], b[:10] = True, False  # 20 discordant items, 10 each way: equal accuracy
    preds = _preds({"a": a, "b": b}, task="t")
    summary = _summary(preds, {"a": 100.0, "b": 50.0})
    pairs = pairs_table(preds)
    dec = decision_table(summary, pairs, margin=0.05).set_index("cell")
    assert dec["decision"].tolist().count("best") == 1
    other = dec[dec["decision"] != "best"].iloc[0]
    assert other["decision"] == "non_inferior" and other["ci_low"] > -0.05 and other["level"] == pytest.approx(0.95)
    (v,) = verdicts(summary, pairs, dec.reset_index())
    assert v["cheapest"] == "b"


def test_every_interval_excludes_zero_exactly_when_holm_rejects_on_a_synthetic_grid():
    rng = np.random.default_rng(7)
    frames = []
    for t, n in (("t1", 30), ("t2", 50), ("t3", 200)):
        latent = rng.random(n)
        cells = {f"s{k}": np.where(rng.random(n) < 0.6, latent, rng.random(n)) < acc
                 for k, acc in enumerate((0.85, 0.7, 0.6, 0.5, 0.3))}
        for model in ("m1", "m2"):
            frames.append(_preds(cells, task=t, model=model))
    preds = pd.concat(frames, ignore_index=True)
    pairs = pairs_table(preds)
    dec = decision_table(_summary(preds, {f"s{k}": 10.0 * k for k in range(5)}), pairs)
    for frame in (pairs, dec[dec["p_holm"].notna()]):
        excl = (frame["ci_low"] > 0) | (frame["ci_high"] < 0)
        assert (excl == (frame["p_holm"] < 0.05)).all()
    assert (pairs["p_holm"] < 0.05).any() and (pairs["p_holm"] >= 0.05).any()


def test_constant_answer_is_marked_and_never_best():
    gold = ["positive", "negative"] * 25
    rows = []
    for s, ans in (("zero_shot", ["positive"] * 50), ("cot", gold[:40] + ["negative"] * 10)):
        rows += [{"task": "sentiment", "model": "M", "strategy": s, "example_id": str(i), "answer": a, "gold": g,
                  "correct": a == g, "error": None} for i, (a, g) in enumerate(zip(ans, gold))]
    preds = pd.DataFrame(rows)
    const = constant_cells(preds).set_index("strategy")
    assert const.loc["zero_shot", "constant_answer"] == "positive" and const.loc["zero_shot", "constant_share"] == 1.0
    assert pd.isna(const.loc["cot", "constant_answer"])
    summary = _summary(preds, {"zero_shot": 10.0, "cot": 20.0}).merge(constant_cells(preds))
    dec = decision_table(summary, pairs_table(preds)).set_index("cell")
    assert dec.loc["zero_shot", "decision"] == "constant_answer" and dec.loc["cot", "decision"] == "best"
    (v,) = verdicts(summary, pairs_table(preds), dec.reset_index())
    assert "zero_shot answers 'positive' on 50 of 50 items; its accuracy (50.0 %) is the share of that label" in v["text"]
    assert "margin of 5 points" in v["text"] or "margin 5 points" in v["text"]


def test_decide_rules():
    assert decide(-0.01, -0.04, 0.02, margin=0.05) == "non_inferior"
    assert decide(-0.02, -0.04, -0.01, margin=0.05) == "non_inferior"  # worse, but by less than the margin
    assert decide(-0.24, -0.40, -0.08, margin=0.05) == "inferior"
    assert decide(-0.10, -0.30, 0.05, margin=0.05) == "inconclusive"
    with pytest.raises(ValueError):
        decide(0, -1, 1, margin=-0.1)


@pytest.mark.parametrize("n,b,c,alpha,margin", [(50, 6, 12, 0.05 / 3, 0.05), (50, 2, 5, 0.05, 0.05),
                                                 (100, 5, 5, 0.05, 0.05), (200, 9, 11, 0.05 / 6, 0.05)])
def test_items_needed_is_where_half_the_simulated_studies_decide(n, b, c, alpha, margin):
    """Simulate studies of N' items with the observed shares of discordant items: at 0.85 x items_needed
    fewer than half decide, at 1.15 x more than half (so the 50 % point is within +-15 %).
    Cases with one boundary in reach; where the estimate sits between -margin and 0 both can be crossed
    and the chance at items_needed is a little above one half (docs/statistics.md)."""
    need = items_needed(n, b, c, alpha=alpha, margin=margin)
    assert need > n
    rng = np.random.default_rng(0)
    probs = [b / n, c / n, 1 - (b + c) / n]
    share = []
    for f in (0.85, 1.15):
        big = int(round(f * need))
        counts = rng.multinomial(big, probs, size=3000)
        bc, inv = np.unique(counts[:, :2], axis=0, return_inverse=True)
        lo, hi = score_interval(bc[:, 0], bc[:, 1], big, alpha)
        decides = ((lo > -margin) | (hi < 0))[inv.ravel()]
        share.append(decides.mean())
    assert share[0] < 0.5 < share[1], (need, share)


def test_compare_ranks_and_tests_runs_on_the_items_they_share(tmp_path):
    import harness
    from harness.backends.scripted import ScriptedBackend
    from harness.reports.report import write_compare

    for name, limit in (("a", 10), ("b", 20)):
        harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(lambda r: "The answer is yes."),
                    limit=limit, out=tmp_path / name, progress=False, write_report=False, cache=False, run_id=name)
    summary = pd.read_csv(tmp_path / "a" / "summary.csv")  # summary.csv marks the constant answer
    assert summary["constant_answer"].tolist() == ["yes"] and summary["constant_share"].tolist() == [1.0]
    assert summary["n_clusters"].tolist() == [10] and summary["se_ratio"].tolist() == [1.0]
    paths = write_compare([tmp_path / "a", tmp_path / "b"], out=tmp_path / "cmp")
    md = paths[1].read_text()
    assert "on the items every run has: coin_flip 10 of 20 items" in md
    pairs = pd.read_csv(tmp_path / "cmp" / "pairs.csv")
    assert (pairs["n"] == 10).all()
    dec = pd.read_csv(tmp_path / "cmp" / "decisions.csv")
    assert set(dec["decision"]) == {"constant_answer"}  # "yes" on every item of a yes/no task


def test_margin_flag_is_recorded_in_run_json_and_every_verdict(tmp_path, capsys):
    import json

    import harness
    from harness.backends.scripted import ScriptedBackend
    from harness.cli import main

    def answer(req):  # right on most items, and on different ones per strategy
        text = req.messages[-1].content
        return "The answer is yes." if hash(text) % 3 else "The answer is no."
    harness.run(["coin_flip"], ["zero_shot", "cot"], backend=ScriptedBackend(answer), limit=20, out=tmp_path / "r",
                progress=False, write_report=False, cache=False)
    assert main(["report", str(tmp_path / "r"), "--margin", "10"]) == 0
    assert json.loads((tmp_path / "r" / "run.json").read_text())["margin"] == pytest.approx(0.10)
    dec = pd.read_csv(tmp_path / "r" / "decisions.csv")
    assert np.allclose(dec["margin"], 0.10)
    md = (tmp_path / "r" / "report.md").read_text()
    verdict = md.split("## Verdict")[1].split("Decisions (decisions.csv)")[0]
    lines = [x for x in verdict.splitlines() if x.startswith("- ")]
    assert lines and all("10 points" in x for x in lines)
    assert main(["report", str(tmp_path / "r")]) == 0  # no flag: the margin run.json records
    assert np.allclose(pd.read_csv(tmp_path / "r" / "decisions.csv")["margin"], 0.10)
    capsys.readouterr()
    assert main(["report", str(tmp_path / "r"), "--margin", "150"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--margin" in err


def test_rows_that_share_items_are_clustered_in_the_summary_and_the_pairs():
    import statsmodels.api as sm
    from scipy.stats import ttest_1samp

    from harness.reports.stats import summarize

    rng = np.random.default_rng(3)
    items, reps = 40, 5
    ease = rng.random(items)
    rows = []
    for s, shift in (("a", 0.15), ("b", 0.0)):
        for i in range(items):
            for r in range(reps):  # five rows per item (pooled draws): correlated through the item's ease
                c = bool(rng.random() < np.clip(ease[i] + shift, 0, 1))
                rows.append({"task": "t", "model": "m", "strategy": s, "example_id": str(i), "correct": c,
                             "error": None, "answer": "x", "gold": str(i), "parse_ok": True, "prompt_tokens": 1,
                             "completion_tokens": 1, "cached": False})
    preds = pd.DataFrame(rows)
    summ = summarize(preds).set_index("strategy")
    ga = preds[preds["strategy"] == "a"]
    y = ga["correct"].astype(float).to_numpy()
    fit = sm.OLS(y, np.ones(len(y))).fit(cov_type="cluster", cov_kwds={"groups": ga["example_id"].astype(int)})
    assert summ.loc["a", "n_clusters"] == items and summ.loc["a", "n"] == items * reps
    assert summ.loc["a", "se_ratio"] == pytest.approx(fit.bse[0] / sm.OLS(y, np.ones(len(y))).fit().bse[0], rel=1e-10)
    assert summ.loc["a", "se_ratio"] > 1.2  # the items' ease makes rows of an item alike
    pairs = pairs_table(preds)
    (row,) = pairs.to_dict("records")
    assert row["method"] == "clustered" and row["n"] == items
    per = preds.assign(c=preds["correct"].astype(float)).groupby(["strategy", "example_id"])["c"].mean().unstack(0)
    assert row["p_mcnemar"] == pytest.approx(ttest_1samp(per["a"] - per["b"], 0).pvalue, rel=1e-10)
    assert ((row["ci_low"] > 0) or (row["ci_high"] < 0)) == (row["p_holm"] < 0.05)
