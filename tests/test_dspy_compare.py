"""bench/dspy_compare.py's harness side: the metric both tools are scored with, and the pairing of the harness's
winner with DSPy's answers on the test items (only the items both answered; the interval is Tango's, computed
here from the discordant counts by brute-force inversion of the score test)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy.stats import norm

from bench.dspy_compare import _number_answer, compare


def test_the_metric_reads_the_last_number_or_word():
    assert _number_answer("The answer is 73.", "73")
    assert not _number_answer("73 or 10? The answer is 10", "73")
    assert _number_answer("Answer: Yes", "yes") and not _number_answer("", "73")


def _tango_brute(b, c, n, alpha=0.05):
    """The deltas the score test does not reject, on a grid; the constrained MLE of q = P(only B right) under
    A - B = delta is found by maximising the multinomial likelihood numerically (no closed form used)."""
    from scipy.optimize import minimize_scalar

    z = norm.isf(alpha / 2)
    keep = []
    for d in np.linspace(-0.99, 0.99, 3961):
        lo_q, hi_q = max(0.0, -d) + 1e-12, (1 - d) / 2 - 1e-12
        nll = lambda q: -(b * np.log(q + d) + c * np.log(q) + (n - b - c) * np.log(1 - 2 * q - d))  # noqa: E731
        q = minimize_scalar(nll, bounds=(lo_q, hi_q), method="bounded", options={"xatol": 1e-12}).x
        var = n * (2 * q + d * (1 - d))
        if var > 0 and abs((b - c - n * d) / np.sqrt(var)) <= z:
            keep.append(d)
    return min(keep), max(keep)


def test_compare_pairs_the_winner_with_dspy_on_shared_test_items(tmp_path):
    rng = np.random.default_rng(3)
    ids = [f"i{k}" for k in range(120)]
    ours = rng.random(120) < 0.7
    theirs = rng.random(120) < 0.5
    opt = tmp_path / "opt"
    (opt / "test").mkdir(parents=True)
    (opt / "optimize.json").write_text(json.dumps({"selection": {"winner": "few_shot:k=3"},
                                                  "val_requests": {"few_shot:k=3": 50, "zero_shot": 50}}))
    rows = [{"strategy": "few_shot:k=3", "example_id": i, "correct": bool(o)} for i, o in zip(ids, ours)]
    rows += [{"strategy": "zero_shot", "example_id": i, "correct": False} for i in ids]  # the baseline: not paired
    pd.DataFrame(rows).to_parquet(opt / "test" / "predictions.parquet")
    dspy = tmp_path / "dspy.json"
    dspy.write_text(json.dumps({"lm_calls": 7, "wall_s": 1.0, "test": [  # DSPy answered 100 of the 120
        {"id": i, "correct": bool(t)} for i, t in list(zip(ids, theirs))[:100]]}))
    res = compare(opt, dspy)
    a, t = ours[:100], theirs[:100]
    b, c = int((a & ~t).sum()), int((~a & t).sum())
    assert res["n"] == 100 and res["harness_val_requests"] == 100
    assert res["diff"] == (a.mean() - t.mean())
    assert (res["interval"]["only_harness"], res["interval"]["only_dspy"]) == (b, c)
    lo, hi = _tango_brute(b, c, 100)
    assert abs(res["interval"]["lower"] - lo) < 6e-4 and abs(res["interval"]["upper"] - hi) < 6e-4  # grid 5e-4
