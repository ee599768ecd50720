"""The report: paired statistics checked against scipy / statsmodels, and the HTML opened in real
headless Chromium (console errors read through the DevTools protocol, XSS payloads must stay text).

Runs are built with the scripted backend (no model) and no request cache, so every answer comes from
the functions below. Chromium must be installed (`apt-get install -y
chromium`); the browser tests fail, not skip, without it.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests

import harness
from harness.backends.scripted import ScriptedBackend
from harness.reports.paired import PAIR_COLUMNS, holm, mcnemar_exact, paired_bootstrap_ci, pairs_table, pareto_front
from harness.records import Completion
from harness.reports.report import write_compare, write_report
from harness.reports.verdicts import verdicts

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
XSS = "<script>window.__xss=1;document.title='pwned'</script>"
XSS_IMG = "<img src=x onerror=\"window.__xss=2;document.title='pwned'\">"
SECTIONS = ["summary", "plots", "significance", "verdict", "examples", "model"]
PAIR_CSV_COLUMNS = ["task", "model", "strategy_a", "strategy_b", "n", "acc_a", "acc_b", "diff", "ci_low",
                    "ci_high", "p_mcnemar", "p_holm", "holm_family", "level", "method", "only_a", "only_b"]


# -- statistics against scipy / statsmodels -------------------------------------------------
def test_mcnemar_exact_equals_binomtest_on_discordant_pairs():
    rng = np.random.default_rng(1)
    for n, pa, pb in [(40, 0.6, 0.4), (25, 0.5, 0.5), (200, 0.7, 0.65), (9, 0.9, 0.1)]:
        a, b = rng.random(n) < pa, rng.random(n) < pb
        only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
        want = binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue
        assert mcnemar_exact(a, b) == pytest.approx(want, rel=1e-12)
    assert mcnemar_exact([True, False], [True, False]) == 1.0  # no discordant pair
    assert np.isnan(mcnemar_exact([], []))


def test_holm_equals_multipletests():
    p = np.array([0.01, 0.04, 0.03, 0.20, 0.001, 0.5])
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])
    with_nan = holm([0.01, np.nan, 0.04])
    np.testing.assert_allclose(with_nan[[0, 2]], multipletests([0.01, 0.04], method="holm")[1])
    assert np.isnan(with_nan[1])


def test_paired_bootstrap_ci_contains_the_observed_difference():
    rng = np.random.default_rng(2)
    a, b = rng.random(60) < 0.7, rng.random(60) < 0.5
    lo, hi = paired_bootstrap_ci(a, b, n_boot=2000, seed=0)
    diff = a.mean() - b.mean()
    assert lo <= diff <= hi and lo < hi
    assert paired_bootstrap_ci(a, b, seed=0) == (lo, hi)  # seeded: reproducible
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0)  # identical answers: no difference in any resample
    # the same percentile bootstrap written the slow way
    r = np.random.default_rng(0)
    idx = r.integers(0, 60, size=(2000, 60))
    d = (a.astype(float) - b.astype(float))[idx].mean(axis=1)
    assert (lo, hi) == pytest.approx((np.quantile(d, 0.025), np.quantile(d, 0.975)))


def test_pareto_front_on_a_hand_made_set():
    pts = [(100, 0.50), (50, 0.50), (200, 0.80), (150, 0.40), (300, 0.80), (20, 0.10), (250, 0.90),
           (np.nan, 0.99)]
    # (100, .5) is tied on accuracy but dearer than (50, .5); (150, .4) and (300, .8) are dominated
    assert pareto_front(pts) == [5, 1, 2, 6]
    assert pareto_front([]) == []


def test_pairs_table_joins_on_items_drops_errors_and_adjusts_per_task():
    rows = []
    for strat, correct in [("s1", [1, 1, 1, 1, 0, 1]), ("s2", [0, 1, 0, 0, 0, 1]), ("s3", [1, 0, 1, 0, 1, 1])]:
        for i, c in enumerate(correct):
            rows.append({"task": "t", "model": "m", "strategy": strat, "example_id": str(i), "correct": bool(c),
                         "error": "HTTP 500" if (strat == "s2" and i == 5) else None})
    rows.append({"task": "t", "model": "m", "strategy": "s3", "example_id": "99", "correct": True, "error": None})
    pairs = pairs_table(pd.DataFrame(rows))
    assert list(pairs.columns) == PAIR_CSV_COLUMNS == PAIR_COLUMNS
    assert len(pairs) == 3
    p12 = pairs[(pairs.strategy_a == "s1") & (pairs.strategy_b == "s2")].iloc[0]
    assert p12["n"] == 5 and p12["acc_a"] == pytest.approx(0.8) and p12["acc_b"] == pytest.approx(0.2)
    np.testing.assert_allclose(pairs["p_holm"], multipletests(pairs["p_mcnemar"], method="holm")[1])


def test_verdict_wording():
    from harness.stats.decisions import items_needed

    summary = pd.DataFrame([
        {"task": "coin_flip", "model": "M", "strategy": "cot", "n": 40, "accuracy": 0.625, "ci_low": 0.47,
         "ci_high": 0.76, "mean_prompt_tokens": 80.0, "mean_completion_tokens": 90.0},
        {"task": "coin_flip", "model": "M", "strategy": "few_shot:k=4", "n": 40, "accuracy": 0.55, "ci_low": 0.4,
         "ci_high": 0.7, "mean_prompt_tokens": 150.0, "mean_completion_tokens": 5.0},
        {"task": "coin_flip", "model": "M", "strategy": "zero_shot", "n": 40, "accuracy": 0.5, "ci_low": 0.35,
         "ci_high": 0.65, "mean_prompt_tokens": 53.0, "mean_completion_tokens": 5.0},
    ])

    def pair(b, diff, lo, hi, p, only_a, only_b):
        return {"task": "coin_flip", "model": "M", "strategy_a": "cot", "strategy_b": b, "n": 40, "diff": diff,
                "ci_low": lo, "ci_high": hi, "level": 1 - 0.05 / 3, "method": "score", "only_a": only_a,
                "only_b": only_b, "p_holm": p}
    pairs = pd.DataFrame([pair("few_shot:k=4", 0.075, -0.05, 0.20, 0.41, 6, 3),
                          pair("zero_shot", 0.125, -0.01, 0.26, 0.30, 8, 3)])
    (v,) = verdicts(summary, pairs)
    need = items_needed(40, 3, 8, alpha=0.05 / 3, margin=0.05)
    assert v["text"] == ("On coin_flip (M), cot is best at 62.5 % (95 % CI 47–76 %, n = 40); against it at a margin "
                         "of 5 points: few_shot:k=4 and zero_shot are not decided. No cheaper strategy is shown to be "
                         f"within 5 points of the best at n = 40; about {int(need):,} items per strategy would decide "
                         "zero_shot vs cot (-12.5 points, 98.3 % CI [-26.0, +1.0]; if the difference held, as "
                         "worse).")
    assert v["cheapest"] == "cot" and not v["significant"]
    pairs.loc[1, ["diff", "ci_low", "ci_high"]] = [0.01, -0.01, 0.04]  # zero_shot within the margin
    (v,) = verdicts(summary, pairs)
    assert v["cheapest"] == "zero_shot" and ("The cheapest strategy shown to be within 5 points of the best is "
                                             "zero_shot (58 tokens per example;") in v["text"]
    pairs.loc[:, ["ci_low", "ci_high", "p_holm"]] = [0.02, 0.3, 0.003]  # both shown worse
    (v,) = verdicts(summary, pairs)
    assert "few_shot:k=4 and zero_shot are worse (the whole interval below 0)" in v["text"]
    assert v["significant"] and v["cheapest"] == "cot" and "every cheaper one is shown to be worse" in v["text"]


def test_verdict_says_tie_or_nothing_correct_instead_of_naming_a_best():
    def row(strategy, acc, tokens):
        return {"task": "t", "model": "M", "strategy": strategy, "n": 20, "accuracy": acc, "ci_low": 0.0,
                "ci_high": 0.2, "mean_prompt_tokens": tokens, "mean_completion_tokens": 0.0}
    pairs = pd.DataFrame([{"task": "t", "model": "M", "strategy_a": "cot", "strategy_b": "zero_shot", "p_holm": 1.0}])
    (v,) = verdicts(pd.DataFrame([row("cot", 0.0, 90.0), row("zero_shot", 0.0, 50.0)]), pairs)
    assert v["text"] == "On t (M), no strategy answered any item correctly (n = 20); there is no best strategy."
    assert v["best"] is None and "best at" not in v["text"]
    (v,) = verdicts(pd.DataFrame([row("cot", 0.0, 90.0)]), pairs)
    assert v["text"] == "On t (M), cot answered no item correctly (n = 20); it is the only strategy that ran."
    assert v["best"] is None
    (v,) = verdicts(pd.DataFrame([row("cot", 0.3, 90.0), row("zero_shot", 0.3, 50.0), row("few", 0.1, 60.0)]), pairs)
    # a tie at the top: the cheaper is the reference, the other is compared with it like any cell
    assert v["text"].startswith("On t (M), zero_shot is best at 30.0 % (95 % CI 0–20 %, n = 20), tied in accuracy "
                                "with cot (the reference is the cheaper);")
    assert v["best"] == "zero_shot" and v["decisions"]["cot"] == "inconclusive"


# -- scripted runs --------------------------------------------------------------------------
RATES = {"zero_shot": 0.45, "cot": 0.9, "few_shot:k=4": 0.7}
LATENCY = {"zero_shot": 0.05, "few_shot:k=4": 0.08, "cot": 0.4}


def _u(*parts: str) -> float:
    """A stable pseudo-random number in [0, 1) from strings."""
    return zlib.crc32("|".join(parts).encode()) / 2**32


def _completion(req, text: str | list[str], latency: float) -> Completion:
    texts = (text,) * req.sampling.n if isinstance(text, str) else tuple(text)
    return Completion(texts=texts, prompt_tokens=sum(len(m.content.split()) for m in req.messages),
                      completion_tokens=tuple(len(t.split()) for t in texts), finish_reasons=("stop",) * len(texts),
                      latency_s=latency, ttft_s=latency / 5)


def symbolic_fn():
    gold = {ex.id: ex.gold for t in ("coin_flip", "last_letter_concat") for ex in harness.load_task(t).examples}

    def fn(req):
        task, strat, ex_id = req.key.split("|")
        g, u = gold[ex_id], _u(strat, ex_id)
        latency = LATENCY[strat] * (1 + _u("lat", strat, ex_id))
        if task == "coin_flip" and strat == "zero_shot" and ex_id.endswith("00000"):
            return _completion(req, f"I cannot tell {XSS} {XSS_IMG}", latency)
        if u > 0.93 and strat != "cot":
            return _completion(req, "I am not sure.", latency)
        ans = g if u < RATES[strat] else ({"yes": "no", "no": "yes"}.get(g) or "zz")
        pre = "The question mentions some steps; let me go through each of them in turn. " if strat == "cot" else ""
        return _completion(req, f'{pre}The answer is "{ans}".' if task != "coin_flip" else f"{pre}The answer is {ans}.",
                           latency)
    return fn


PERSON_GOLD: dict = {}


def feature_fn(req):
    """person_json (guided and free), needle sweep, self-consistency."""
    task, strat, ex_id = req.key.split("|")
    text = "\n".join(m.content for m in req.messages)
    if task == "person_json":
        gold = PERSON_GOLD.setdefault("g", {e.id: e.gold for e in harness.load_task("person_json").examples})[ex_id]
        if req.output_type is not None:  # guided: always valid JSON, sometimes the wrong age
            return _completion(req, json.dumps({**gold, "age": gold["age"] + (_u(ex_id) > 0.75)}), 0.1)
        if _u(ex_id) < 0.4:
            return _completion(req, "Sure! " + json.dumps(gold), 0.1)
        return _completion(req, f"The person is {gold['first_name']}, aged {gold['age']}.", 0.1)
    m = re.search(r"In which city does (\w+) keep", text)
    city = re.search(rf"{m[1]} keeps the secret key in (\w+)\.", text)[1]
    n_words = len(text.split())
    p_right = 0.9 if n_words < 400 else 0.3
    answers = [f"The answer is {city if _u(ex_id, str(i)) < p_right else 'Oslo'}." for i in range(req.sampling.n)]
    return _completion(req, answers, 0.01 * n_words / 50)


def _needle_task(folder: Path, tokens: int) -> str:
    src = (ROOT / "tasks" / "needle_haystack.yaml").read_text()
    src = src.replace("name: needle_haystack", f"name: needle_haystack_{tokens}")
    src = src.replace("context_tokens: 512", f"context_tokens: {tokens}")
    path = folder / f"needle_haystack_{tokens}.yaml"
    path.write_text(src)
    return str(path)


@pytest.fixture(scope="module")
def symbolic_run(tmp_path_factory) -> Path:
    """The done-when run: coin_flip and last_letter_concat x zero_shot, cot, few_shot:k=4, limit 40
    (harness.run(..., report=True) writes the report at the end)."""
    out = tmp_path_factory.mktemp("runs") / "symbolic"
    harness.run(["coin_flip", "last_letter_concat"], ["zero_shot", "cot", "few_shot:k=4"],
                backend=ScriptedBackend(symbolic_fn(), model_name="Scripted-135M"), limit=40, out=out,
                progress=False, cache=False, report=True, latency_probe=1)  # the probe is opt-in
    return out


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory, symbolic_run) -> Path:
    base = tmp_path_factory.mktemp("features")
    person, needle = base / "person", base / "needle"
    harness.run(["person_json"], ["zero_shot", "zero_shot:guided=true"], backend=ScriptedBackend(feature_fn),
                limit=12, out=person, progress=False, write_report=False, cache=False)
    tasks = [_needle_task(base, 256), _needle_task(base, 1024)]
    harness.run(tasks, ["zero_shot", "self_consistency:k=3"], backend=ScriptedBackend(feature_fn), limit=8,
                out=needle, progress=False, write_report=False, cache=False)
    out = base / "compare"
    paths = write_compare([symbolic_run, person, needle], out=out, all_pairs=True)
    assert [p.name for p in paths] == ["report.html", "report.md", "pairs.csv", "decisions.csv"]
    return out


def test_run_writes_report_md_and_pairs(symbolic_run):
    for name in ("report.html", "report.md", "pairs.csv"):
        assert (symbolic_run / name).is_file(), name
    pairs = pd.read_csv(symbolic_run / "pairs.csv")
    assert list(pairs.columns) == PAIR_CSV_COLUMNS
    assert len(pairs) == 6 and set(pairs["task"]) == {"coin_flip", "last_letter_concat"}
    assert (pairs["n"] > 0).all() and pairs["p_holm"].between(0, 1).all()
    assert (pairs["p_holm"] >= pairs["p_mcnemar"] - 1e-12).all()
    md = (symbolic_run / "report.md").read_text()
    assert "## Verdict" in md and "On coin_flip (Scripted-135M), cot is best" in md
    assert "<script>" not in md


def test_report_is_idempotent(symbolic_run):
    # No time limit here: speed is measured in bench/, and a timed test fails on a loaded machine.
    first = write_report(symbolic_run)
    pairs = (symbolic_run / "pairs.csv").read_text()
    paths = write_report(symbolic_run)
    assert paths == first == [symbolic_run / "report.html", symbolic_run / "report.md", symbolic_run / "pairs.csv",
                                 symbolic_run / "decisions.csv"]
    assert (symbolic_run / "pairs.csv").read_text() == pairs


def test_compare_report_has_every_plot_and_keeps_runs_apart(compare_dir, tmp_path, symbolic_run):
    html = (compare_dir / "report.html").read_text()
    for pid in ("plot-accuracy", "plot-tokens", "plot-latency-front", "plot-latency", "plot-majk", "plot-guided",
                "plot-context"):
        assert f'id="{pid}"' in html, pid
    pairs = pd.read_csv(compare_dir / "pairs.csv")
    assert list(pairs.columns) == PAIR_CSV_COLUMNS
    # the same run twice (two template versions, say): strategies are kept apart as strategy@run_id
    write_compare([symbolic_run, symbolic_run], out=tmp_path / "twice", all_pairs=True)
    twice = pd.read_csv(tmp_path / "twice" / "pairs.csv")
    assert twice["strategy_a"].str.contains("@").all() and len(twice) == 2 * 15
    assert "all pairs of strategies and runs" in (tmp_path / "twice" / "report.md").read_text()


def _two_runs(tmp_path, rates_a: dict, rates_b: dict, n: int = 60) -> list[Path]:
    """Two scripted runs of coin_flip whose strategies answer item i correctly when i < rate * n."""
    dirs = []
    for name, rates in (("a", rates_a), ("b", rates_b)):
        def fn(req, rates=rates):
            strat = "cot" if "step by step" in req.messages[-1].content else "zero_shot"
            i = int(req.key.rsplit("-", 1)[1])
            gold = harness.load_task("coin_flip").examples[i].gold
            right = i < rates[strat] * n
            return f"The answer is {gold if right else ('no' if gold == 'yes' else 'yes')}."
        out = tmp_path / name
        harness.run(["coin_flip"], ["zero_shot", "cot"], backend=ScriptedBackend(fn), limit=n, out=out,
                    progress=False, write_report=False, cache=False)
        dirs.append(out)
    return dirs


def test_compare_corrects_within_the_family_asked_for(tmp_path):
    """Default: the same strategy across runs (2 comparisons), Holm over those 2 only; --all-pairs: all
    6 pairs of strategies and runs, Holm over the 6 (the issue's p 0.03 -> 0.19 came from the latter)."""
    dirs = _two_runs(tmp_path, {"zero_shot": 0.5, "cot": 0.6}, {"zero_shot": 0.5, "cot": 0.8})
    write_compare(dirs, out=tmp_path / "fam")
    fam = pd.read_csv(tmp_path / "fam" / "pairs.csv")
    assert len(fam) == 2 and (fam["holm_family"] == "same_strategy").all()
    assert sorted(fam["strategy_a"].str.split("@").str[0]) == ["cot", "zero_shot"]
    assert (fam["strategy_a"].str.split("@").str[0] == fam["strategy_b"].str.split("@").str[0]).all()
    np.testing.assert_allclose(fam["p_holm"], multipletests(fam["p_mcnemar"], method="holm")[1])
    md = (tmp_path / "fam" / "report.md").read_text()
    assert "Family corrected (Holm): the same strategy across runs" in md
    assert "cot across runs: cot@b 80.0 % vs cot@a 60.0 % (n = 60), significant (p = 0.001, Holm over the 2" in md
    write_compare(dirs, out=tmp_path / "all", all_pairs=True)
    every = pd.read_csv(tmp_path / "all" / "pairs.csv")
    assert len(every) == 6
    np.testing.assert_allclose(every["p_holm"], multipletests(every["p_mcnemar"], method="holm")[1])
    cot = lambda df: df[df["strategy_a"].str.startswith("cot@") & df["strategy_b"].str.startswith("cot@")]
    assert cot(every)["p_mcnemar"].iloc[0] == pytest.approx(cot(fam)["p_mcnemar"].iloc[0])
    assert cot(every)["p_holm"].iloc[0] > cot(fam)["p_holm"].iloc[0]  # a larger family costs power


def test_report_md_escapes_only_what_markdown_would_read_as_markup(tmp_path):
    """report.md writes "p < 0.001" as is (it was "&lt; 0.001"); a tag-like model name stays text. Checked by
    rendering the file with markdown-it-py (CommonMark + tables), not by the harness's own escaping."""
    import html as html_mod

    from markdown_it import MarkdownIt

    render = MarkdownIt("commonmark").enable("table").render
    dirs = _two_runs(tmp_path, {"zero_shot": 0.5, "cot": 0.6}, {"zero_shot": 0.5, "cot": 0.8})
    md = write_compare(dirs, out=tmp_path / "cmp")[1].read_text()
    assert re.search(r"\(p [<=] 0\.\d+, Holm", md) and "&lt; 0.0" not in md and "&gt;" not in md and "&amp;" not in md
    # the one "&lt;" left is in a Python qualname ("fn.<locals>"), which Markdown would read as an HTML tag
    assert all(re.match(r"&lt;[A-Za-z/!?]", md[m.start():]) for m in re.finditer("&lt;", md))
    text = html_mod.unescape(re.sub(r"<[^>]+>", "", render(md)))
    assert re.search(r"\(p [<=] 0\.\d+, Holm", text) and "&lt;" not in text and "<locals>" in text
    name = "M <b>bold</b> & AT&amp;T \\* a|b"
    out = tmp_path / "named"
    harness.run(["coin_flip"], ["zero_shot", "cot"], backend=ScriptedBackend(lambda r: "The answer is yes.",
                model_name=name), limit=4, out=out, progress=False, cache=False, report=True)
    rendered = render((out / "report.md").read_text())
    assert "<b>" not in rendered  # text, never markup
    text = html_mod.unescape(re.sub(r"<[^>]+>", "", rendered))
    assert text.count(name) >= 3  # the title, the summary and the verdict, as written


# -- the HTML in real headless Chromium -----------------------------------------------------
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is not installed: `apt-get update && apt-get install -y chromium` "
                "(CI's .ci/run installs it). The report's browser checks cannot run without it.")


class Browser:
    """Headless Chromium driven over the DevTools protocol (websocket-client)."""

    def __init__(self) -> None:
        try:
            import websocket
        except ImportError:
            pytest.fail("the browser test needs websocket-client: pip install -e '.[test]'")
        self.profile = tempfile.mkdtemp(prefix="harness-chromium-")
        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "--window-size=1280,2000",
             "about:blank"], stdout=self.log, stderr=subprocess.STDOUT)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                pytest.fail(f"Chromium did not start: {Path(self.log.name).read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        for _ in range(100):
            targets = json.loads(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=5).read())
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            time.sleep(0.05)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id, self.events = 0, []
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=2000, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, f"{method}: {msg['error']}"
                return msg.get("result", {})
            self.events.append(msg)

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        deadline = time.time() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            assert time.time() < deadline, "the page did not finish loading"
            self.events.append(json.loads(self.ws.recv()))

    def console_errors(self) -> list[str]:
        time.sleep(0.3)  # let late console messages arrive
        self.call("Runtime.evaluate", expression="1")
        errors = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                errors.append(json.dumps(p.get("exceptionDetails", {}))[:500])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(json.dumps(p.get("args", []))[:500])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(p["entry"].get("text", "")[:500])
        return errors

    def evaluate(self, js: str):
        res = self.call("Runtime.evaluate", expression=js, returnByValue=True)
        assert "exceptionDetails" not in res, res
        return res["result"].get("value")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


PAGE_FACTS = """JSON.stringify({
  xss: typeof window.__xss, title: document.title, scripts: document.scripts.length,
  injected_imgs: document.querySelectorAll('img[src="x"], img[onerror]').length,
  sections: %s.filter(id => document.getElementById(id) !== null),
  headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
  imgs: Array.from(document.images).map(i => ({id: i.closest('figure') ? i.closest('figure').id : null,
        png: i.src.startsWith('data:image/png;base64,'), w: i.naturalWidth})),
  text: document.body.textContent, details: document.querySelectorAll('details').length,
})""" % json.dumps(SECTIONS)


def _check_page(browser: Browser, html: Path) -> dict:
    browser.open(html)
    errors = browser.console_errors()
    assert errors == [], f"console errors in {html.name}: {errors}"
    facts = json.loads(browser.evaluate(PAGE_FACTS))
    assert facts["sections"] == SECTIONS
    assert facts["imgs"] and all(i["png"] and i["w"] > 0 for i in facts["imgs"]), facts["imgs"]
    assert facts["scripts"] == 0 and facts["injected_imgs"] == 0
    return facts


def test_report_renders_in_chromium_without_running_the_payload(browser, symbolic_run):
    facts = _check_page(browser, symbolic_run / "report.html")
    assert facts["xss"] == "undefined", "the <script> payload ran"
    assert facts["title"].startswith("Run ") and "pwned" not in facts["title"]
    assert XSS in facts["text"], "the payload should be shown as escaped text"
    assert "<img src=x onerror=" in facts["text"]
    for h in ("Verdict", "Summary", "Plots", "Paired significance", "Examples", "Model and engine"):
        assert h in facts["headings"]
    assert {"plot-accuracy", "plot-tokens", "plot-latency"} <= {i["id"] for i in facts["imgs"]}
    assert "cot is best" in facts["text"] and facts["details"] >= 6
    html = (symbolic_run / "report.html").read_text()
    assert "&lt;script&gt;window.__xss=1" in html and not re.search(r"(src|href)=\"?(https?:)?//", html)
    browser.screenshot(ARTIFACTS / "report.png")
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


SUMMARY_FIT = """JSON.stringify((() => {
  const t = document.querySelector('#summary table'), shown = el => el.checkVisibility();
  const groups = Array.from(t.querySelectorAll('thead tr:first-child th')).filter(shown);
  const heads = Array.from(t.querySelectorAll('thead tr:last-child th')).filter(shown);
  return {page: document.documentElement.scrollWidth, right: t.getBoundingClientRect().right,
          box: t.parentElement.getBoundingClientRect().right, heads: heads.map(h => h.textContent),
          groups: groups.map(h => h.textContent), spans: groups.reduce((n, h) => n + h.colSpan, 0),
          cells: Array.from(t.querySelectorAll('tbody tr')).map(r => Array.from(r.cells).filter(shown).length)};
})())"""


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory) -> Path:
    """Every kind of summary column at once: JSON scores, sampling, hourly $, the probe and the latency model."""
    out = tmp_path_factory.mktemp("wide") / "run"
    harness.run(["coin_flip", "person_json"], ["zero_shot", "few_shot:k=2,seed=1,order=shuffled", "cot", "self_consistency:k=3",
                                               "zero_shot:guided=true"],
                backend=ScriptedBackend(lambda r: ["The answer is yes."] * r.sampling.n, model_name="SmolLM2-135M-Instruct"),
                limit=12, out=out, progress=False, cache=False, report=True, latency_probe=1, latency_calibration=4,
                hourly_usd=1.0)
    return out


def test_summary_table_fits_a_1400_px_window_with_the_rest_one_toggle_away(browser, wide_run, compare_dir):
    """The summary's columns are grouped (accuracy, cost, latency); those not shown open with a checkbox
    (CSS only: the page has no script), and the table never widens the page (it scrolls in its own box)."""
    browser.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
    try:
        for html in (wide_run / "report.html", compare_dir / "report.html"):
            browser.open(html)
            closed = json.loads(browser.evaluate(SUMMARY_FIT))
            assert closed["page"] <= 1400 and closed["right"] <= 1400, closed
            assert closed["groups"] == ["", "accuracy", "cost", "latency"], closed["groups"]
            assert closed["spans"] == len(closed["heads"]) and set(closed["cells"]) == {len(closed["heads"])}
            if html.parent == wide_run:
                browser.screenshot(ARTIFACTS / "summary-1400.png")
            browser.evaluate("document.getElementById('summary-all-columns').click(), 1")
            opened = json.loads(browser.evaluate(SUMMARY_FIT))
            assert len(opened["heads"]) > len(closed["heads"]) and set(closed["heads"]) < set(opened["heads"])
            assert opened["spans"] == len(opened["heads"]) and set(opened["cells"]) == {len(opened["heads"])}
            assert opened["page"] <= 1400 and opened["box"] <= 1400, opened  # wider tables scroll inside their box
            if html.parent == wide_run:  # 20-odd columns in all: the table the issue saw scroll sideways
                assert len(opened["heads"]) >= 20 and "$ total" in opened["heads"], opened["heads"]
    finally:
        browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=2000, deviceScaleFactor=1, mobile=False)


TEXT_BOXES = """JSON.stringify((() => {
  const sel = 'h1,h2,h3,h4,p,li,th,td,figcaption,summary,code,a,.muted';
  const boxes = [];
  for (const el of document.querySelectorAll(sel)) {
    if (!el.checkVisibility()) continue;  // e.g. inside a closed <details>
    for (const node of el.childNodes) {
      if (node.nodeType !== 3 || !node.textContent.trim()) continue;
      const r = document.createRange(); r.selectNodeContents(node);
      for (const b of r.getClientRects()) if (b.width > 0 && b.height > 0)
        boxes.push({t: node.textContent.trim().slice(0, 40), x0: b.left, y0: b.top, x1: b.right, y1: b.bottom});
    }
  }
  const bad = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    if (a.x0 + 1 < b.x1 && b.x0 + 1 < a.x1 && a.y0 + 1 < b.y1 && b.y0 + 1 < a.y1) bad.push(a.t + ' / ' + b.t);
  }
  const figs = Array.from(document.querySelectorAll('figure')).map(f => [f.id, f.dataset.textOverlaps]);
  return {n: boxes.length, bad: bad.slice(0, 20), figs};
})())"""


def _no_overlapping_text(browser: Browser, html: Path) -> dict:
    """In Chromium: no two text boxes of the page intersect, and every plot's text elements (checked on
    the matplotlib figure that made the PNG: titles, tick and axis labels, point labels, legends) do not
    intersect either (`data-text-overlaps` = 0)."""
    browser.open(html)
    res = json.loads(browser.evaluate(TEXT_BOXES))
    assert res["n"] > 50 and res["bad"] == [], res["bad"]
    assert res["figs"] and all(n == "0" for _, n in res["figs"]), res["figs"]
    return res


def test_report_text_and_plot_labels_never_overlap_in_chromium(browser, symbolic_run, tmp_path):
    _no_overlapping_text(browser, symbolic_run / "report.html")
    # ties: two strategies at the same cost and accuracy (the "tied points are both grey")
    tied = tmp_path / "tied"
    harness.run(["coin_flip"], ["zero_shot", "zero_shot:seed=1", "few_shot:k=2"],
                backend=ScriptedBackend(lambda r: "The answer is yes."), limit=20, out=tied, progress=False,
                cache=False, report=True)
    facts = _no_overlapping_text(browser, tied / "report.html")
    assert {"plot-tokens", "plot-accuracy"} <= {f for f, _ in facts["figs"]}
    md = (tied / "report.md").read_text()
    # every strategy answers "yes": constant answers, never a best or a tie (issue 22)
    assert "every strategy gives a constant answer; there is no best strategy" in md and "best at" not in md
    assert "answers &#x27;yes&#x27; on 20 of 20 items" in md or "answers 'yes' on 20 of 20 items" in md


def test_tradeoff_plot_checker_catches_overprinting_and_ties_are_distinct():
    from harness.reports.plot_text import text_overlaps
    from harness.reports.plots import _dodge, tradeoff_plot
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.annotate("cot (dominated)", (0.5, 0.5))
    ax.annotate("few_shot (dominated)", (0.5, 0.5))
    assert text_overlaps(fig), "the checker must see two labels printed on each other"
    summary = pd.DataFrame([{"task": "t", "model": "m", "strategy": s, "accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6,
                             "mean_total_tokens": 100.0} for s in ("a", "b", "c")])
    (plot,) = tradeoff_plot(summary, "mean_total_tokens", "tokens", pid="p", title="T")
    assert plot.overlaps == ()
    xs = _dodge(np.array([100.0, 100.0, 100.0, 200.0]), np.array([0.5, 0.5, 0.5, 0.5]))
    assert len(set(xs[:3])) == 3 and xs[3] == 200.0
    assert pareto_front([(100, 0.5), (100, 0.5), (200, 0.4)]) == [0, 1]  # a tie: neither dominates



def test_accuracy_plot_shows_every_rate_of_the_scorer_table_present():
    from harness.reports.plots import accuracy_plot

    base = {"task": "t", "model": "m", "accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    (plain,) = accuracy_plot(pd.DataFrame([{**base, "strategy": "a"}]))
    (both,) = accuracy_plot(pd.DataFrame([{**base, "strategy": "a", "accuracy_strict": 0.3},
                                          {**base, "strategy": "b", "accuracy_strict": 0.5}]))
    assert "Hollow markers" not in plain.caption and "Hollow markers" in both.caption
    assert both.overlaps == () and plain.overlaps == ()


def test_compare_report_renders_in_chromium(browser, compare_dir):
    facts = _check_page(browser, compare_dir / "report.html")
    assert facts["xss"] == "undefined" and XSS in facts["text"]
    assert len(facts["imgs"]) >= 7
    browser.screenshot(ARTIFACTS / "compare.png")


def test_compare_shows_runs_side_by_side_with_differing_settings(tmp_path):
    import json as _json

    from harness.reports.report import write_compare

    dirs = []
    for i, flag in enumerate([True, False]):
        out = tmp_path / f"run{i}"
        harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(lambda r: "The answer is yes."), limit=4,
                    out=out, progress=False, write_report=False, cache=False)
        meta = _json.loads((out / "run.json").read_text())
        meta["engine"] = {"enable_prefix_caching": flag, "dtype": "bfloat16"}
        (out / "run.json").write_text(_json.dumps(meta))
        dirs.append(out)
    md = write_compare(dirs, out=tmp_path / "cmp")[1].read_text()
    section = md.split("## Runs side by side")[1].split("##")[0]
    assert "enable_prefix_caching" in section and "dtype" not in section  # only settings that differ
    assert "run0" in section and "run1" in section
