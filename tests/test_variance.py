"""The few-shot variance split (harness/reports/variance.py): the ANOVA estimator against statsmodels' MixedLM
(REML equals ANOVA on balanced data when no estimate is truncated), against a simulation with known
variance components on 0/1 outcomes, and the table built from a real run folder (scripted backend)."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.reports.summary import print_summary
from harness.reports.variance import anova_components, decompose, family_name, setting_levels, variance_table


def _crossed_frame(y: np.ndarray) -> pd.DataFrame:
    """Long format of an (items, draws, orders[, samplings]) array with the nested ids spelled out."""
    idx = np.indices(y.shape).reshape(y.ndim, -1)
    df = pd.DataFrame({"y": y.ravel(), "item": idx[0], "draw": idx[1], "g": 1})
    df["order"] = idx[1] * y.shape[2] + idx[2]
    df["item_draw"] = df["item"] * y.shape[1] + df["draw"]
    if y.ndim == 4:
        df["sampling"] = df["order"] * y.shape[3] + idx[3]
        df["item_order"] = df["item"] * (y.shape[1] * y.shape[2]) + df["order"]
    return df


def _reml(df: pd.DataFrame, comps: list[str]) -> dict[str, float]:
    import statsmodels.formula.api as smf

    model = smf.mixedlm("y ~ 1", df, groups="g", re_formula="0",
                        vc_formula={c: f"0 + C({c})" for c in comps})
    fit = model.fit(reml=True, method=["lbfgs"])
    out = dict(zip(model.exog_vc.names, map(float, fit.vcomp)))
    out["residual"] = float(fit.scale)
    return out


def test_anova_equals_statsmodels_reml_on_balanced_data_two_levels():
    rng = np.random.default_rng(1)
    n_items, d, o = 24, 4, 3
    y = (rng.normal(0, 1.0, n_items)[:, None, None] + rng.normal(0, 0.7, d)[None, :, None]
         + rng.normal(0, 0.5, (d, o))[None] + rng.normal(0, 0.4, (n_items, d))[:, :, None]
         + rng.normal(0, 0.3, (n_items, d, o)))
    est = anova_components(y)
    ref = _reml(_crossed_frame(y), ["item", "draw", "order", "item_draw"])
    assert est["item"] == pytest.approx(ref["item"], rel=2e-3)
    assert est["factors"] == pytest.approx([ref["draw"], ref["order"]], rel=2e-3)
    assert est["interactions"] == pytest.approx([ref["item_draw"], ref["residual"]], rel=2e-3)


def test_anova_equals_statsmodels_reml_on_balanced_data_three_levels():
    rng = np.random.default_rng(4)
    n_items, d, o, s = 12, 4, 2, 2
    y = (rng.normal(0, 1.0, n_items)[:, None, None, None] + rng.normal(0, 0.8, d)[None, :, None, None]
         + rng.normal(0, 0.6, (d, o))[None, :, :, None] + rng.normal(0, 0.5, (d, o, s))[None]
         + rng.normal(0, 0.5, (n_items, d))[:, :, None, None] + rng.normal(0, 0.4, (n_items, d, o))[..., None]
         + rng.normal(0, 0.3, (n_items, d, o, s)))
    est = anova_components(y)
    if min([est["item"]] + est["factors"] + est["interactions"]) <= 0:
        pytest.fail("pick a seed whose estimates are all positive (REML = ANOVA only then)")
    ref = _reml(_crossed_frame(y), ["item", "draw", "order", "sampling", "item_draw", "item_order"])
    assert est["item"] == pytest.approx(ref["item"], rel=5e-3)
    assert est["factors"] == pytest.approx([ref["draw"], ref["order"], ref["sampling"]], rel=5e-3)
    assert est["interactions"] == pytest.approx([ref["item_draw"], ref["item_order"], ref["residual"]], rel=5e-3)


def test_simulated_correctness_recovers_known_components():
    """0/1 outcomes with P(correct) = 0.5 + item + draw + order, each a random +-x (variance x^2):
    the mean of the estimates over many data sets is the known variance (the estimator is unbiased),
    and the residual is E[p (1 - p)] = 0.25 - Var(p)."""
    rng = np.random.default_rng(3)
    a, b, c = 0.2, 0.1, 0.06
    n_items, d, o, reps = 60, 4, 3, 400
    got = []
    for _ in range(reps):
        p = (0.5 + a * rng.choice([-1, 1], n_items)[:, None, None] + b * rng.choice([-1, 1], d)[None, :, None]
             + c * rng.choice([-1, 1], (d, o))[None])
        est = anova_components((rng.random(p.shape) < p).astype(float))
        got.append([est["item"], *est["factors"], sum(est["interactions"])])
    mean, se = np.mean(got, axis=0), np.std(got, axis=0) / np.sqrt(reps)
    truth = np.array([a * a, b * b, c * c, 0.25 - (a * a + b * b + c * c)])
    assert np.all(np.abs(mean - truth) < 4 * se + 1e-4), (mean, truth, se)


def test_decompose_shares_sum_to_one_and_bootstrap_is_reproducible():
    rng = np.random.default_rng(5)
    y = (rng.random((30, 3, 2)) < 0.6).astype(float)
    res = decompose(y, n_boot=200, seed=0)
    assert sum(r["share"] for r in res.values()) == pytest.approx(1.0)
    assert all(r["variance"] >= 0 and r["ci_low"] <= r["ci_high"] for r in res.values())
    assert decompose(y, n_boot=200, seed=0) == res
    # the same percentile bootstrap written out for one component: resample items, re-estimate, truncate
    r = np.random.default_rng(0)
    draws = [max(0.0, anova_components(y[r.integers(0, 30, size=30)])["factors"][0]) for _ in range(200)]
    assert (res["f0"]["ci_low"], res["f0"]["ci_high"]) == pytest.approx(
        (np.quantile(draws, 0.025), np.quantile(draws, 0.975)))


@pytest.mark.parametrize("spec,decoding,want", [
    ("few_shot:k=3,seed=1,order=shuffled,order_seed=2", '{"temperature": 0, "seed": 1}', (1, 2, None)),
    ("few_shot:k=1,seed=1,order=shuffled,order_seed=2", '{"temperature": 0, "seed": 1}', (1, None, None)),
    ("few_shot:k=3,seed=1,selection=first", '{"temperature": 0.7, "seed": 1}', (None, None, 1)),
    ("few_shot:k=3", '{"temperature": 0.7, "seed": 5}', (None, None, 5)),
    ("zero_shot:seed=4", '{"temperature": 0, "seed": 4}', (None, None, None)),
    ("self_consistency:k=4,shots=2,seed=3", '{"temperature": 0.7, "seed": 3}', (3, None, 3)),
    ("not_a_strategy", "{}", None),
])
def test_setting_levels(spec, decoding, want):
    assert setting_levels(spec, decoding) == want


def test_family_name_drops_only_the_seed_keys():
    assert family_name("few_shot:k=3,seed=1,order=shuffled,order_seed=0,sampling_seed=2") == \
        "few_shot:k=3,order=shuffled"
    assert family_name("cot:seed=1") == "cot"


def _prompt_hash_fn(wrong_share: int = 3):
    """Answers from a hash of the whole prompt (and the sampling seed when sampling): a draw or an
    order that changes the prompt changes the answers; a sampling seed changes them only if used."""
    def fn(req):
        key = req.messages[-1].content + (str(req.sampling.seed) if req.sampling.temperature > 0 else "")
        h = int(hashlib.sha256(key.encode()).hexdigest(), 16)
        return "The answer is no." if h % wrong_share == 0 else "The answer is yes."
    return fn


def test_variance_csv_and_summary_from_a_grid_run(tmp_path, capsys):
    out = tmp_path / "r"
    harness.run(["coin_flip"], ["few_shot:k={1,3},seed={0,1,2},order=shuffled,order_seed={0,1}", "zero_shot"],
                backend=ScriptedBackend(_prompt_hash_fn()), limit=20, out=out, progress=False, cache=False, report=True)
    table = pd.read_csv(out / "variance.csv")
    assert set(table["family"]) == {"few_shot:k=1,order=shuffled", "few_shot:k=3,order=shuffled"}
    k3 = table[table["family"] == "few_shot:k=3,order=shuffled"].set_index("component")
    assert list(k3.index) == ["item", "draw", "order", "sampling", "residual"]
    assert k3.loc["draw", "levels"] == 3 and k3.loc["order", "levels"] == 2
    assert np.isnan(k3.loc["sampling", "variance"])  # greedy: the sampling seed cannot matter
    assert k3["share"].sum() == pytest.approx(1.0)
    assert k3.loc["draw", "n_settings"] == 6 and k3.loc["draw", "n_items"] == 20
    k1 = table[table["family"] == "few_shot:k=1,order=shuffled"].set_index("component")
    assert np.isnan(k1.loc["order", "variance"])  # one exemplar has one order: order_seed is collapsed
    # the same figures from the predictions, recomputed by hand as an array
    preds = pd.read_parquet(out / "predictions.parquet")
    y = np.zeros((20, 3, 2))
    for d in range(3):
        for o in range(2):
            spec = f"few_shot:k=3,seed={d},order=shuffled,order_seed={o}"
            y[:, d, o] = preds[preds["strategy"] == spec].sort_values("example_id")["correct"].astype(float)
    est = anova_components(y)
    assert k3.loc["draw", "variance"] == pytest.approx(max(0.0, est["factors"][0]))
    assert k3.loc["item", "variance"] == pytest.approx(max(0.0, est["item"]))
    print_summary(out)
    text = capsys.readouterr().out
    assert "variance of correctness by source: coin_flip · few_shot:k=3,order=shuffled" in text
    assert "not varied" in text
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "## Variance by source" in md and 'id="variance"' in html


def test_sampling_seed_is_a_source_when_sampling(tmp_path):
    out = tmp_path / "r"
    harness.run(["coin_flip"], ["few_shot:k=2,seed={0,1},temperature=0.7,sampling_seed={0,1,2}"],
                backend=ScriptedBackend(_prompt_hash_fn()), limit=15, out=out, progress=False, cache=False,
                write_report=False)
    t = pd.read_csv(out / "variance.csv").set_index("component")
    assert t.loc["sampling", "levels"] == 3 and t.loc["draw", "levels"] == 2
    assert np.isnan(t.loc["order", "variance"])


def test_no_variance_file_without_a_varied_source_or_when_unbalanced(tmp_path):
    fn = _prompt_hash_fn()
    harness.run(["coin_flip"], ["zero_shot", "few_shot:k=2"], backend=ScriptedBackend(fn), limit=5,
                out=tmp_path / "a", progress=False, cache=False, write_report=False)
    assert not (tmp_path / "a" / "variance.csv").exists()
    df = harness.run(["coin_flip"], ["few_shot:k=2,seed={0,1},order=shuffled,order_seed={0,1}"],
                     backend=ScriptedBackend(fn), limit=5, out=tmp_path / "b", progress=False, cache=False,
                     write_report=False)
    # drop one setting: draw 1 has one order, draw 0 two -> unbalanced -> no decomposition
    assert variance_table(df[df["strategy"] != "few_shot:k=2,seed=1,order=shuffled,order_seed=1"]).empty
    assert not variance_table(df).empty


def test_report_section_escapes_model_names(tmp_path):
    xss = "<script>window.__xss=1</script>"
    out = tmp_path / "r"
    harness.run(["coin_flip"], ["few_shot:k=2,seed={0,1}"], backend=ScriptedBackend(_prompt_hash_fn(), model_name=xss),
                limit=6, out=out, progress=False, cache=False, report=True)
    html = (out / "report.html").read_text()
    section = html[html.index('<section id="variance">'):]
    section = section[: section.index("</section>")]
    assert "&lt;script&gt;" in section and "<script>" not in section
    assert "<script>" not in (out / "report.md").read_text()


def test_report_section_in_chromium(tmp_path):
    """The section in the real browser: no console error, the payload in the model name stays text."""
    from test_report import Browser  # the DevTools-driven headless Chromium of the report tests

    xss = "<img src=x onerror=\"window.__xss=2\">"
    out = tmp_path / "r"
    harness.run(["coin_flip"], ["few_shot:k=2,seed={0,1,2},order=shuffled,order_seed={0,1}"],
                backend=ScriptedBackend(_prompt_hash_fn(), model_name=xss), limit=10, out=out, progress=False,
                cache=False, report=True)
    browser = Browser()
    try:
        browser.open(out / "report.html")
        assert browser.console_errors() == []
        facts = browser.evaluate("""JSON.stringify({xss: typeof window.__xss,
          rows: Array.from(document.querySelectorAll('#variance tbody tr')).map(
                r => Array.from(r.cells).map(c => c.textContent)),
          nav: Array.from(document.querySelectorAll('nav a')).map(a => a.getAttribute('href')),
          injected: document.querySelectorAll('img[src="x"], img[onerror]').length})""")
    finally:
        browser.close()
    import json
    facts = json.loads(facts)
    assert facts["xss"] == "undefined" and facts["injected"] == 0 and "#variance" in facts["nav"]
    assert all(r[1] == xss for r in facts["rows"])  # the model name is shown as text
    assert [r[4] for r in facts["rows"]] == ["item", "draw", "order", "sampling", "residual"]
    assert facts["rows"][1][5] == "3" and facts["rows"][2][5] == "2" and facts["rows"][3][6] == "not varied"
