"""Several models in one run, the matrix (templates x strategies x models) in report.html, and the
`harness view` results browser. Scripted backends (no model): the engine path is in
tests/test_grid_engine.py and the issue's done-when run. The browser checks run real headless Chromium."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, chi2

from harness.backends.scripted import ScriptedBackend
from harness.cli import main
from harness.reports.matrix import cell_pairs, cell_table, matrix_verdicts, mark_cells
import harness
from harness.runs.multimodel import split_model_spec
from harness.reports.report import write_report
from harness.reports.report_format import fp
from harness.reports.view import safe_path, start_in_thread
from test_report import Browser  # the DevTools driver of the report's browser tests

XSS = "<script>window.__xss=1;document.title='pwned'</script><img src=x onerror=\"window.__xss=2\">"
STRATS = ["zero_shot", "cot", "zero_shot:template=coin_flip_terse.j2"]


def _u(*parts) -> float:
    """A uniform number in [0, 1) fixed by its parts (stable across runs and call orders)."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16) / 2**32


def _coin_gold_backend(name: str, p: float, seed: int = 0):
    """Right with probability p on coin_flip / last_letter_concat (it knows the gold); a wrong answer is
    the other label or the XSS payload (which parses to nothing)."""
    import harness

    gold = {ex.id: ex.gold for t in ("coin_flip", "last_letter_concat") for ex in harness.load_task(t).examples}

    def fn(req):
        _task, strat, ex_id = req.key.split("|")
        g = gold[ex_id]
        if _u(name, strat, ex_id, seed) < p:
            return f"The answer is {g}."
        return f"The answer is {'no' if g == 'yes' else 'yes'}." if _u("w", name, ex_id) < 0.5 else XSS
    return ScriptedBackend(fn, model_name=name)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mm") / "run"
    events = []

    class Tracked(ScriptedBackend):
        def close(self):
            events.append(("close", self.model_name))

    def make(name, url):
        events.append(("build", name))
        b = _coin_gold_backend(name, {"strong": 0.95, "weak": 0.35}[name])
        return Tracked(b.fn, model_name=name)
    harness.run(models=["strong", "weak"], backend=make, tasks=["coin_flip"], strategies=STRATS, limit=40, out=out,
               progress=False, cache=False)
    write_report(out)
    assert events == [("build", "strong"), ("close", "strong"), ("build", "weak"), ("close", "weak")]
    return out


def test_several_models_share_one_run_folder_and_resume_per_model(two_models, tmp_path):
    preds = pd.read_parquet(two_models / "predictions.parquet")
    assert sorted(preds["model"].unique()) == ["strong", "weak"] and len(preds) == 2 * 3 * 40
    meta = json.loads((two_models / "run.json").read_text())
    assert [m["name"] for m in meta["config"]["models"]] == ["strong", "weak"]
    assert set(meta["per_model"]) == {"strong", "weak"} and meta["resumes"] == []
    summary = pd.read_csv(two_models / "summary.csv")
    assert len(summary) == 6 and set(summary.groupby("model").size()) == {3}  # per (task, strategy, model)
    # a rerun into the same folder: every unit of both models is journaled, nothing is asked again
    calls = []

    def make(name, url):
        b = ScriptedBackend(lambda r: "The answer is yes.", model_name=name)
        calls.append(b)
        return b
    harness.run(models=["strong", "weak"], backend=make, tasks=["coin_flip"], strategies=STRATS, limit=40,
               out=two_models, progress=False, cache=False)
    assert [b.calls for b in calls] == [[], []]
    # a third model added later runs only its own units (latency measures off: the default latency model's
    # calibration would add its own single requests, 120 units per model being over its 100-unit threshold)
    harness.run(models=["strong", "weak", "third"], backend=make, tasks=["coin_flip"], strategies=STRATS, limit=40,
               out=two_models, progress=False, cache=False, latency_probe=0)
    assert calls[2].calls == [] and sum(calls[4].calls) == 3 * 40
    with pytest.raises(Exception, match="twice"):
        harness.run(models=["a", "a"], backend=make, tasks=["coin_flip"], limit=2, out=tmp_path / "x")


def test_a_resume_finds_every_recorded_model(two_models, capsys):
    from harness.runs.multimodel import multi_model_resume

    specs, names = multi_model_resume(two_models)
    assert names[:2] == ["strong", "weak"] and specs == names  # (a later test may add a third)
    assert main(["run", "--resume", str(two_models), "--dry-run"]) == 0
    assert f"x {len(names)} models ({', '.join(names)})" in capsys.readouterr().out


def test_cli_dry_run_with_two_models(capsys):
    assert main(["run", "--task", "coin_flip", "--model", "bundled", "--model", "other/model", "--strategy", "zero_shot",
                 "--strategy", "zero_shot:template=terse", "--limit", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "x 2 models (bundled, other/model)" in out and "zero_shot:template=terse" in out


class CannedServer:
    """An OpenAI-shaped chat server on 127.0.0.1 that records which model each request named."""

    def __init__(self, answer: str, served: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        self.models: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _json(self, obj):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._json({"object": "list", "data": [{"id": served, "object": "model", "created": 0,
                                                      "owned_by": "me"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outer.models.append(body.get("model"))
                if body.get("stream"):  # the backend streams: server-sent events, then [DONE]
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for obj in ({"choices": [{"index": 0, "delta": {"role": "assistant", "content": answer},
                                              "finish_reason": "stop"}]},
                                {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}}):
                        obj.update({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"]})
                        self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                    return
                self._json({"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                         "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_each_server_model_is_asked_at_its_own_base_url(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    yes, no = CannedServer("The answer is yes.", "alpha"), CannedServer("The answer is no.", "beta")
    try:
        assert main(["run", "--backend", "openai", "--model", f"alpha@{yes.url}", "--model", f"beta@{no.url}",
                     "--task", "coin_flip", "--strategy", "zero_shot", "--limit", "4", "--out", str(tmp_path / "r"),
                     "--no-cache", "--quiet", "--no-report"]) == 0
    finally:
        yes.close()
        no.close()
    # 4 rows, then each server model's own latency calibration by the run's one rule (4 units: the reduced one,
    # a discarded warm-up and REDUCED_CALIBRATION single requests), so both models have an estimated latency
    from harness.runs.latency_model import REDUCED_CALIBRATION

    assert yes.models == ["alpha"] * (4 + 1 + REDUCED_CALIBRATION) and no.models == ["beta"] * (4 + 1 + 3)
    summary = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert summary["est_latency_p50_s"].notna().all() and set(summary["latency_source"]) == {"estimate-reduced"}
    preds = pd.read_parquet(tmp_path / "r" / "predictions.parquet")
    assert set(preds.groupby("model")["answer"].agg(lambda a: "".join(sorted(set(a))))) == {"yes", "no"}
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert [(m["name"], m["base_url"]) for m in meta["config"]["models"]] == [("alpha", yes.url), ("beta", no.url)]


def test_model_at_url_and_the_cli_refusals(tmp_path, capsys):
    assert split_model_spec("llama@http://127.0.0.1:8000/v1") == ("llama", "http://127.0.0.1:8000/v1")
    assert split_model_spec("org/name") == ("org/name", None)
    assert main(["view", str(tmp_path), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--allow-remote" in err and err.count("\n") == 1


def test_cell_pairs_match_an_independent_score_test_and_holm(two_models):
    preds = pd.read_parquet(two_models / "predictions.parquet")
    preds = preds[preds["model"].isin(["strong", "weak"])]
    pairs = cell_pairs(preds)
    assert len(pairs) == 15  # 6 cells
    ok = preds[preds["error"].isna()]
    vec = {k: g.set_index("example_id")["correct"].astype(bool) for k, g in ok.groupby(["strategy", "model"])}
    ps = []
    for r in pairs.to_dict("records"):
        a, b = vec[(r["strategy_a"], r["model_a"])], vec[(r["strategy_b"], r["model_b"])]
        j = pd.concat([a, b], axis=1, join="inner").to_numpy()
        only_a, only_b = int((j[:, 0] & ~j[:, 1]).sum()), int((~j[:, 0] & j[:, 1]).sum())
        # McNemar without continuity correction, written out: chi2 = (b - c)^2 / (b + c) on 1 df
        p = 1.0 if only_a + only_b == 0 else chi2.sf((only_a - only_b) ** 2 / (only_a + only_b), 1)
        assert r["p_mcnemar"] == pytest.approx(p) and r["n"] == len(j)
        assert ((r["ci_low"] > 0) or (r["ci_high"] < 0)) == (r["p_holm"] < 0.05)
        ps.append(p)
    # Holm by hand: sorted p times (m - rank), running max, capped at 1
    m, order = len(ps), np.argsort(ps)
    adj, run = np.empty(m), 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (m - rank) * ps[i]))
        adj[i] = run
    np.testing.assert_allclose(pairs["p_holm"], adj)


def test_matrix_verdict_decides_every_cell_against_the_best(two_models):
    """Issue 22 over a matrix: each cell against the best at the margin, from the cell pairs' intervals (decided
    here again by the rule written out: non_inferior above -margin, inferior below 0); only best or
    non_inferior cells are recommended; "not significantly worse" never reads as "as good"."""
    preds = pd.read_parquet(two_models / "predictions.parquet")
    preds = preds[preds["model"].isin(["strong", "weak"])]
    summary = pd.read_csv(two_models / "summary.csv").query("model in ['strong', 'weak']")
    cells = cell_table(preds, summary)
    pairs = cell_pairs(preds)
    (v,) = matrix_verdicts(summary, pairs)
    top = cells.sort_values(["accuracy", "cost", "strategy"], ascending=[False, True, True]).iloc[0]
    assert v["best"] == (top["strategy"], top["model"]) and top["model"] == "strong"
    for (strat, model), dec in v["decisions"].items():
        if (strat, model) == v["best"]:
            assert dec == "best"
            continue
        pr = pairs[((pairs["strategy_a"] == strat) & (pairs["model_a"] == model) & (pairs["strategy_b"] == v["best"][0])
                    & (pairs["model_b"] == v["best"][1])) | ((pairs["strategy_b"] == strat) & (pairs["model_b"] == model)
                    & (pairs["strategy_a"] == v["best"][0]) & (pairs["model_a"] == v["best"][1]))].iloc[0]
        lo, hi = (pr["ci_low"], pr["ci_high"]) if pr["strategy_a"] == strat and pr["model_a"] == model \
            else (-pr["ci_high"], -pr["ci_low"])
        want = "non_inferior" if lo > -0.05 else "inferior" if hi < 0 else "inconclusive"
        assert dec == want, (strat, model, lo, hi)
        if model == "weak":
            assert dec == "inferior"  # 35 % vs 95 % on 40 items: every weak cell is shown worse
    assert v["decisions"][v["cheapest"]] in ("best", "non_inferior")
    assert "is best at" in v["text"] and "over its 6 cells (2 models" in v["text"] and "strategy" not in \
        v["text"].replace("zero_shot", "").replace("few_shot", "")
    marked = mark_cells(cells, pairs)
    assert marked[marked["model"] == "weak"]["worse_than_row"].all()
    assert not marked[marked["model"] == "strong"]["worse_than_row"].any()
    md = (two_models / "report.md").read_text()
    assert "## Matrix: templates × strategies × models" in md and "▼row" in md and "coin_flip_terse.j2 (" in md


def test_matrix_verdict_never_names_a_constant_cell():
    """A cell that answers one label on every item is called what it is, not best or tied (issue 22)."""
    rows = []
    for model, answers in (("a", ["yes"] * 20), ("b", ["yes", "no"] * 10)):
        for i, ans in enumerate(answers):
            gold = "yes" if i % 2 == 0 else "no"
            rows.append({"task": "t", "strategy": "zero_shot", "model": model, "example_id": str(i), "answer": ans,
                         "gold": gold, "correct": ans == gold, "error": None, "parse_ok": True, "prompt_tokens": 10,
                         "completion_tokens": 2})
    preds = pd.DataFrame(rows)
    from harness.reports.stats import summarize

    summary = summarize(preds)
    (v,) = matrix_verdicts(summary, cell_pairs(preds))
    assert v["decisions"][("zero_shot", "a")] == "constant_answer" and v["best"] == ("zero_shot", "b")
    assert "zero_shot on a answers 'yes' on 20 of 20 items" in v["text"]


CELL_FACTS = """JSON.stringify({
  xss: typeof window.__xss, title: document.title, scripts: document.scripts.length,
  injected: document.querySelectorAll('img[src="x"], img[onerror]').length,
  cells: document.querySelectorAll('td.mcell').length,
  colours: Array.from(document.querySelectorAll('td.mcell')).map(td => getComputedStyle(td).backgroundColor),
  worseRow: document.querySelectorAll('td.worse-row').length,
  visibleDetails: Array.from(document.querySelectorAll('.cell-detail')).filter(d => d.checkVisibility()).length,
})"""


def _visible(browser, sel):
    return browser.evaluate(f"Array.from(document.querySelectorAll({json.dumps(sel)}))"
                            ".filter(e => e.checkVisibility()).length")


def test_matrix_in_chromium_cells_open_their_examples_and_model_output_stays_inert(browser, two_models):
    browser.open(two_models / "report.html")
    assert browser.console_errors() == []
    f = json.loads(browser.evaluate(CELL_FACTS))
    assert f["cells"] == 6 and f["worseRow"] == 3 and f["visibleDetails"] == 0
    assert len(set(f["colours"])) > 1  # coloured by accuracy
    # click the weakest cell: its examples appear; the filters narrow them (CSS only, no script)
    browser.evaluate("document.querySelector('td.worse-row a').click()")
    time.sleep(0.2)
    assert _visible(browser, ".cell-detail") == 1
    total = _visible(browser, ".cell-detail .ex")
    ok = _visible(browser, ".cell-detail .ex-ok")
    browser.evaluate("document.querySelector('.cell-detail:target .f-fail').click()")
    time.sleep(0.1)
    fails = _visible(browser, ".cell-detail .ex")
    assert 0 < fails < total and _visible(browser, ".cell-detail .ex-ok") == 0 and fails == total - ok
    browser.evaluate("document.querySelector('.cell-detail:target .f-parse').click()")
    time.sleep(0.1)
    assert _visible(browser, ".cell-detail .ex") == _visible(browser, ".cell-detail .ex-parse")
    browser.evaluate("document.querySelector('.cell-detail:target .f-all').click()")
    browser.evaluate("document.querySelectorAll('.cell-detail:target details').forEach(d => d.open = true)")
    text = browser.evaluate("document.querySelector('.cell-detail:target').textContent")
    assert "<script>window.__xss=1" in text and "extracted answer" in text and "gold" in text
    f = json.loads(browser.evaluate(CELL_FACTS))
    assert f["xss"] == "undefined" and f["title"] != "pwned" and f["scripts"] == 0 and f["injected"] == 0
    html = (two_models / "report.html").read_text()
    assert "&lt;script&gt;window.__xss=1" in html and "http://" not in html and "https://" not in html


# -- harness view ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def results_root(tmp_path_factory, two_models) -> Path:
    """Three run folders: two one-model runs on the same coin_flip items, one on another task; and a
    secret next to the results folder, which no URL may reach."""
    base = tmp_path_factory.mktemp("view")
    root = base / "results"
    for name, p, task in (("run-a", 0.75, "coin_flip"), ("run-b", 0.5, "coin_flip"), ("run-c", 0.5, "last_letter_concat")):
        b = _coin_gold_backend(name.replace("run", "model"), p)
        from harness import run
        run([task], ["zero_shot"], backend=b, limit=30, out=root / name, progress=False, cache=False, report=True)
    (base / "secret.txt").write_text("TOP-SECRET")
    os.symlink(base / "secret.txt", root / "run-a" / "leak.txt")
    os.symlink(base, root / "run-a" / "up")
    return root


def _tree_digest(root: Path) -> dict:
    return {str(p): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def view(results_root):
    before = _tree_digest(results_root)
    srv, url = start_in_thread(results_root)
    yield url
    srv.shutdown()
    srv.server_close()
    assert _tree_digest(results_root) == before, "harness view wrote into the results folder"


def _navigate(browser, url: str) -> None:
    browser.events.clear()
    browser.call("Page.navigate", url=url)
    deadline = time.time() + 30
    while not any(e.get("method") == "Page.loadEventFired" for e in browser.events):
        assert time.time() < deadline, "the page did not finish loading"
        browser.events.append(json.loads(browser.ws.recv()))


def _wait_load(browser) -> None:
    deadline = time.time() + 30
    while not any(e.get("method") == "Page.loadEventFired" for e in browser.events):
        assert time.time() < deadline
        browser.events.append(json.loads(browser.ws.recv()))


def test_view_in_chromium_lists_filters_and_compares_two_runs(browser, view):
    _navigate(browser, view)
    runs = json.loads(browser.evaluate("JSON.stringify(Array.from(document.querySelectorAll('tr.run')).map(r => r.dataset.run))"))
    assert sorted(runs) == ["run-a", "run-b", "run-c"]
    # filter by task with the page's own form
    browser.events.clear()
    browser.evaluate("document.querySelector('#filter input[name=task]').value = 'coin'; "
                     "document.querySelector('#filter').submit()")
    _wait_load(browser)
    runs = json.loads(browser.evaluate("JSON.stringify(Array.from(document.querySelectorAll('tr.run')).map(r => r.dataset.run))"))
    assert sorted(runs) == ["run-a", "run-b"] and "task=coin" in browser.evaluate("location.href")
    # tick both and compare
    browser.events.clear()
    browser.evaluate("document.querySelectorAll('#compare input[type=checkbox]').forEach(c => c.checked = true); "
                     "document.querySelector('#compare').submit()")
    _wait_load(browser)
    assert browser.console_errors() == []
    page = json.loads(browser.evaluate("""JSON.stringify({
      runs: document.querySelectorAll('li.crun').length, scripts: document.scripts.length, xss: typeof window.__xss,
      pairs: Array.from(document.querySelectorAll('#pairs tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent)),
      items: document.querySelectorAll('table.items tbody tr').length})"""))
    assert page["runs"] == 2 and page["scripts"] == 0 and page["xss"] == "undefined" and page["items"] == 30
    (pair,) = page["pairs"]
    a = pd.read_parquet(Path(view_root(view)) / "run-a" / "predictions.parquet").set_index("example_id")["correct"].astype(bool)
    b = pd.read_parquet(Path(view_root(view)) / "run-b" / "predictions.parquet").set_index("example_id")["correct"].astype(bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    expected = chi2.sf((only_a - only_b) ** 2 / (only_a + only_b), 1)  # the score test (McNemar, no correction)
    assert pair[3] == "30" and pair[8] == fp(expected)  # fp: the page's number format (2 significant digits)
    # the first model's report opens from the list
    _navigate(browser, view + "runs/run-a/report.html")
    assert browser.evaluate("document.title").startswith("Run run-a")


_ROOTS: dict[str, str] = {}


def view_root(url: str) -> str:
    return _ROOTS[url]


@pytest.fixture(autouse=True, scope="module")
def _remember_root(results_root, view):
    _ROOTS[view] = str(results_root)


@pytest.mark.parametrize("path", [
    "/runs/../secret.txt", "/runs/%2e%2e/secret.txt", "/runs/%2E%2E/%2e%2e/secret.txt", "/runs/run-a/../../secret.txt",
    "/runs/run-a/%2e%2e%2f%2e%2e%2fsecret.txt", "/runs//etc/passwd", "/runs/%2fetc%2fpasswd", "/runs/run-a/leak.txt",
    "/runs/run-a/up/secret.txt", "/runs/run-a/..%5c..%5csecret.txt", "/../secret.txt", "/runs/run-a/journal.jsonl",
    "/compare?run=..&run=run-a", "/compare?run=%2e%2e%2fresults%2frun-a&run=run-b", "/runs/~/secret.txt",
])
def test_view_never_serves_outside_the_results_folder(view, path):
    host, port = view.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)  # sent as written, no client-side normalising
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status in (403, 404) and b"TOP-SECRET" not in body and b"root:" not in body
    conn.close()


def test_safe_path_accepts_only_files_inside(results_root):
    assert safe_path(results_root.resolve(), "run-a/report.html") == (results_root / "run-a" / "report.html").resolve()
    for bad in ("../secret.txt", "%2e%2e/secret.txt", "/etc/passwd", "run-a/up/secret.txt", "run-a", ""):
        assert safe_path(results_root.resolve(), bad) is None


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()



def test_the_leftover_check_sees_a_process_started_after_the_snapshot():
    import subprocess
    import sys

    from harness.runs.multimodel import _descendants, _wait_children_gone, engine_children

    before = _descendants()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert engine_children(before) == [child.pid]
        assert _wait_children_gone(before, timeout=0.5) == [child.pid]  # what run_models refuses to go on with
    finally:
        child.kill()
        child.wait()
    assert engine_children(before) == []


def test_run_json_keeps_both_hashes_of_a_variant_name_two_tasks_share():
    from harness.runs.provenance import templates_used
    from harness.strategy.strategies import parse_strategy
    from harness.task.tasks import load_task

    coin, person = load_task("coin_flip"), load_task("person_json")
    used = templates_used([coin, person], [parse_strategy("zero_shot"), parse_strategy("zero_shot:template=terse")])
    assert used == {"coin_flip.j2": coin.template.hash, "person_json.j2": person.template.hash,
                    "terse": coin.variant("terse").template.hash,
                    "person_json:terse": person.variant("terse").template.hash}
    assert used["terse"] != used["person_json:terse"]  # before: one 'terse' key, coin_flip's hash lost


def test_view_filters_by_template_hash_and_model(view, results_root):
    import re
    import urllib.request

    from harness.task.tasks import load_task

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def listed(query: str) -> list[str]:
        html = opener.open(view + query, timeout=10).read().decode()
        return sorted(re.findall(r'<tr class="run" data-run="([^"]+)"', html))
    assert listed("") == ["run-a", "run-b", "run-c"]
    assert listed("?template=" + load_task("coin_flip").template.hash[:8]) == ["run-a", "run-b"]
    assert listed("?template=" + load_task("last_letter_concat").template.hash[:8]) == ["run-c"]
    assert listed("?model=model-b") == ["run-b"] and listed("?task=nothing-like-this") == []
