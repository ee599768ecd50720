"""`harness optimize` against DSPy's BootstrapFewShotWithRandomSearch on the same splits (issue 24).

DSPy is not a dependency of the harness: it runs in a scratch environment of its own, against `harness serve`
(the bundled model behind an OpenAI-compatible server). Three steps, the second in DSPy's environment:

    python -m bench.dspy_compare export --opt OPT --out SPLIT.json          # the optimise folder's parts
    harness serve --port 8123 &
    DSPY_PY bench/dspy_compare.py dspy --split SPLIT.json --base-url http://127.0.0.1:8123/v1 --out DSPY.json
    python -m bench.dspy_compare compare --opt OPT --dspy DSPY.json          # the paired test difference

`export` writes the train pool (DSPy's trainset: the exemplars the harness draws from), the val items the
harness selected on (DSPy's valset) and the test items (read once by each side, after its selection), each
item's question as the task's template renders its `input` section, and its gold answer. `dspy` runs
BootstrapFewShotWithRandomSearch with that valset and as many candidate programs as the harness searched
(DSPy adds 3 fixed ones, zero-shot, labelled and unshuffled, to `num_candidate_programs`: we pass
candidates - 3), then answers the test items with the chosen program; it counts every LM call. `compare`
pairs both sides on the test items (Tango's score interval, the harness's verdict statistics) and prints
evaluations and wall times. The `dspy` step imports nothing of the harness.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path


def _number_answer(text: str, gold: str) -> bool:
    """The metric of both sides for a label / number task: the last number-or-word token equals the gold."""
    found = re.findall(r"-?\d+(?:\.\d+)?|[A-Za-z]+", str(text or ""))
    return bool(found) and found[-1].strip().lower() == str(gold).strip().lower()


# --------------------------------------------------------------------------- harness side

def export(opt: Path, out: Path) -> dict:
    from harness.runs.optimize import read_state
    from harness.task.splits import SplitSpec, split_task
    from harness.task.tasks import load_task

    import pandas as pd

    state = read_state(opt)
    settings = state["settings"]
    task = load_task(settings["task"], data_dir=settings.get("data_dir"))
    split = SplitSpec(**{**state["split"], "part": "val"})
    pool = split_task(task, split).pool
    val_ids = list(dict.fromkeys(pd.read_parquet(opt / "val" / "predictions.parquet")["example_id"]))
    test_ids = list(dict.fromkeys(pd.read_parquet(opt / "test" / "predictions.parquet")["example_id"]))
    by_id = {e.id: e for e in task.examples}

    def item(ex) -> dict:
        q = task.template.render({**ex.fields, "cot": False}, sections=("input",))["input"]
        return {"id": ex.id, "question": q, "answer": str(ex.gold)}

    doc = {"task": task.name, "train": [item(e) for e in pool], "val": [item(by_id[i]) for i in val_ids],
           "test": [item(by_id[i]) for i in test_ids], "candidates": len(state["chosen"]),
           "val_requests": sum(state["val_requests"].values())}
    out.write_text(json.dumps(doc, indent=1))
    return doc


def compare(opt: Path, dspy_out: Path) -> dict:
    import pandas as pd

    from harness.stats.paired import score_interval, score_p_value, table_counts

    state = json.loads((opt / "optimize.json").read_text())
    winner = state["selection"]["winner"]
    test = pd.read_parquet(opt / "test" / "predictions.parquet")
    ours = test[test["strategy"] == winner].set_index("example_id")["correct"].astype(float)
    d = json.loads(dspy_out.read_text())
    theirs = pd.Series({r["id"]: float(r["correct"]) for r in d["test"]})
    common = ours.index.intersection(theirs.index)
    a, b = ours.loc[common].to_numpy(), theirs.loc[common].to_numpy()
    n, only_a, only_b = table_counts(a, b)
    lo, hi = score_interval(only_a, only_b, n)
    iv = {"lower": round(lo, 4), "upper": round(hi, 4), "p": round(score_p_value(only_a, only_b), 4),
          "only_harness": only_a, "only_dspy": only_b}
    res = {"n": int(len(common)), "harness_winner": winner, "harness_test": float(a.mean()),
           "dspy_test": float(b.mean()), "diff": float(a.mean() - b.mean()), "interval": iv,
           "dspy_lm_calls": d["lm_calls"], "dspy_wall_s": d["wall_s"], "dspy_choice": d.get("chosen"),
           "harness_val_requests": sum(state["val_requests"].values())}
    return res


# --------------------------------------------------------------------------- DSPy side (its own environment)

def run_dspy(split: Path, base_url: str, out: Path, *, max_tokens: int, threads: int, seed_demos: int) -> dict:
    import dspy
    from dspy.teleprompt import BootstrapFewShotWithRandomSearch
    from dspy.utils.callback import BaseCallback

    doc = json.loads(split.read_text())
    calls = {"n": 0}

    class Count(BaseCallback):
        def on_lm_start(self, call_id, instance, inputs):
            calls["n"] += 1

    import urllib.request

    with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=30) as r:  # the served model's name
        served = json.loads(r.read())["data"][0]["id"]
    lm = dspy.LM(f"openai/{served}", api_base=base_url, api_key="none", temperature=0.0, max_tokens=max_tokens,
                 cache=False, num_retries=1)
    dspy.configure(lm=lm, callbacks=[Count()])

    def ex(r):
        return dspy.Example(question=r["question"], answer=r["answer"], id=r["id"]).with_inputs("question")

    train, val, test = ([ex(r) for r in doc[k]] for k in ("train", "val", "test"))

    def metric(example, pred, trace=None):
        return _number_answer(getattr(pred, "answer", ""), example.answer)

    start = time.perf_counter()
    opt = BootstrapFewShotWithRandomSearch(metric=metric, max_bootstrapped_demos=seed_demos,
                                           max_labeled_demos=seed_demos,
                                           num_candidate_programs=max(doc["candidates"] - 3, 1),
                                           num_threads=threads, max_errors=10**9)  # an unparsed answer scores 0
    program = opt.compile(dspy.Predict("question -> answer"), trainset=train, valset=val)
    search_calls, search_s = calls["n"], time.perf_counter() - start
    rows = []
    for e in test:  # read once, after the choice
        try:
            pred = program(question=e.question)
            ans, ok = str(getattr(pred, "answer", "")), True
        except Exception as exc:  # an answer DSPy could not parse is wrong, and counted
            ans, ok = f"<error: {type(exc).__name__}>", False
        rows.append({"id": e.id, "answer": ans, "parsed": ok, "correct": ok and _number_answer(ans, e.answer)})
    res = {"lm_calls": calls["n"], "search_lm_calls": search_calls, "wall_s": round(time.perf_counter() - start, 1),
           "search_s": round(search_s, 1), "candidates": doc["candidates"],
           "val_scores": [float(c["score"]) for c in getattr(program, "candidate_programs", [])],
           "chosen": {"demos": len(program.demos) if hasattr(program, "demos") else None},
           "test": rows, "test_accuracy": sum(r["correct"] for r in rows) / max(len(rows), 1),
           "unparsed": sum(not r["parsed"] for r in rows)}
    out.write_text(json.dumps(res, indent=1))
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dspy_compare")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--opt", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    d = sub.add_parser("dspy")
    d.add_argument("--split", type=Path, required=True)
    d.add_argument("--base-url", required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--max-tokens", type=int, default=64)
    d.add_argument("--threads", type=int, default=8)
    d.add_argument("--demos", type=int, default=4, help="max bootstrapped and labelled demos (DSPy's default 4)")
    c = sub.add_parser("compare")
    c.add_argument("--opt", type=Path, required=True)
    c.add_argument("--dspy", type=Path, required=True)
    a = p.parse_args(argv)
    if a.cmd == "export":
        doc = export(a.opt, a.out)
        print(f"{a.out}: train {len(doc['train'])}, val {len(doc['val'])}, test {len(doc['test'])}, "
              f"{doc['candidates']} candidates")
    elif a.cmd == "dspy":
        r = run_dspy(a.split, a.base_url, a.out, max_tokens=a.max_tokens, threads=a.threads, seed_demos=a.demos)
        print(json.dumps({k: v for k, v in r.items() if k != "test"}, indent=1))
    else:
        print(json.dumps(compare(a.opt, a.dspy), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
