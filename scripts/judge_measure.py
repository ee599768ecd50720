"""Measure the bundled model as a judge on the real engine (docs/judge.md):

1. 1,000 guided judge calls (the default verdict schema as a JSON constraint) -> parse failures;
2. the same 1,000 calls without guided decoding -> the parse-failure rate;
3. the judge against known labels on both: q0, q1, Cohen's kappa (harness.stats.judge);
4. pairwise mode on 100 items (a right and a wrong answer, both orders) -> the order-flip rate.

The judged answers are written here, half right and half wrong (capital cities in six phrasings,
and the explain_why generator's right and wrong explanations), so the truth is known without any
generation. Everything goes through the harness's own judge pass (harness.runs.judging) on one
VLLMBackend. Run under the engine lock:

    flock /tmp/engine.lock python scripts/judge_measure.py --out results/judge-measure.json [--n 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import replace

# Judge requests per engine call. One call of 300 guided requests died on 2 loaded cores (2026-12-05:
# "RPC call to execute_model timed out", EngineDeadError); smaller calls keep each engine step short.
BATCH = int(os.environ.get("JUDGE_MEASURE_BATCH", 64))

PHRASES = ["The capital of {country} is {city}.", "{city}.", "It is {city}, I believe.",
           "{country}'s capital city is {city}.", "{city} is the capital.", "The answer is {city}."]
PREFIXES = ["", "I think ", "Well, ", "In short: ", "Simply put, ", "As far as I know, ", "Basically, "]


def judge_set(n: int, seed: int = 0):
    """(task name, example, candidate output, truly right) for n distinct items, half right."""
    from harness.task.tasks import load_task

    cap = load_task("capital_judged")
    why = load_task("explain_why")
    cap_ex = {ex.fields["country"]: ex for ex in cap.examples}
    why_ex = {ex.fields["question"]: ex for ex in why.examples}
    rng = random.Random(seed)
    items = []
    cities = sorted({ex.gold for ex in cap_ex.values()})
    for country, ex in sorted(cap_ex.items()):
        for ph in PHRASES:
            wrong = rng.choice([c for c in cities if c != ex.gold])
            items.append(("capital_judged", ex, ph.format(country=country, city=ex.gold), True))
            items.append(("capital_judged", ex, ph.format(country=country, city=wrong), False))
    from harness.task.generators.explain import WHY

    for q, _fact, good, bad in WHY:
        ex = why_ex[q]
        for pre in PREFIXES:
            items.append(("explain_why", ex, pre + good[0].lower() + good[1:] if pre else good, True))
            items.append(("explain_why", ex, pre + bad[0].lower() + bad[1:] if pre else bad, False))
    rng.shuffle(items)
    return items[:n], {"capital_judged": cap, "explain_why": why}


def unguided(task):
    spec = task.spec.model_copy(update={"judge": task.spec.judge.model_copy(update={"guided": False})})
    t = replace(task, spec=spec)
    t.__dict__.update({k: v for k, v in task.__dict__.items() if k in ("template", "examples", "pool")})
    return t


def grade(items, tasks, judges):
    from harness.runs.judging import judge_rows
    from harness.stats.judge import judge_quality

    rows = [{"output": out, "unit_id": f"m{i}"} for i, (_, _, out, _) in enumerate(items)]
    t0 = time.perf_counter()
    todo = [(tasks[name], ex, row) for (name, ex, _, _), row in zip(items, rows)]
    for k in range(0, len(todo), BATCH):  # see BATCH
        judge_rows(todo[k:k + BATCH], judges)
    wall = time.perf_counter() - t0
    ok = [r["judge_parse_ok"] for r in rows]
    why = Counter((r["judge_parse_error"] or "").split(":")[0] for r in rows if not r["judge_parse_ok"])
    decided = [(r["judge_pass"], truth) for r, (_, _, _, truth) in zip(rows, items) if r["judge_pass"] is not None]
    q = judge_quality([d[0] for d in decided], [d[1] for d in decided]).as_dict() if decided else {}
    return {"calls": len(rows), "parse_failures": ok.count(False), "parse_failure_rate": ok.count(False) / len(rows),
            "failure_kinds": dict(why), "wall_s": round(wall, 1),
            "completion_tokens": sum(r["judge_completion_tokens"] for r in rows),
            "quality": q,
            "examples_unparsed": [r["judge_output"][:200] for r in rows if not r["judge_parse_ok"]][:5]}


def pairwise(n_pairs: int, judges, seed: int = 0):
    """n_pairs distinct items (a country and a phrasing), each a right and a wrong answer; the right one
    is strategy "a" on even items and "b" on odd ones. Through harness.runs.judging.judge_pairs."""
    from harness.records import Example
    from harness.runs.judging import judge_pairs, pairwise_summary
    from harness.task.tasks import load_task

    task = load_task("capital_pairwise")
    rng = random.Random(seed)
    base = sorted(task.examples, key=lambda e: e.fields["country"])
    cities = sorted({ex.gold for ex in base})
    combos = [(ex, k) for k in range(len(PHRASES)) for ex in base]
    rng.shuffle(combos)
    examples, entries, truth = [], [], {}
    for i, (ex, k) in enumerate(combos[:n_pairs]):
        ex_id = f"{ex.id}-p{k}"
        examples.append(Example(id=ex_id, fields=ex.fields, gold=ex.gold))
        country = ex.fields["country"]
        right = PHRASES[k].format(country=country, city=ex.gold)
        wrong = PHRASES[k].format(country=country, city=rng.choice([c for c in cities if c != ex.gold]))
        a, b = (right, wrong) if i % 2 == 0 else (wrong, right)
        truth[ex_id] = "A" if i % 2 == 0 else "B"
        for strat, out in (("a", a), ("b", b)):
            entries.append({"p": {"task": task.name, "model": "m", "strategy": strat, "example_id": ex_id,
                                  "output": out}})
    task.__dict__["examples"] = tuple(examples)  # the measurement's items in place of the generator's
    t0 = time.perf_counter()
    pairs = judge_pairs(entries, [task], judges)
    wall = time.perf_counter() - t0
    pairs["truth"] = pairs["example_id"].map(truth)
    decided = pairs["outcome"] != "tie"
    return {"summary": pairwise_summary(pairs)[0], "items": len(pairs), "wall_s": round(wall, 1),
            "right": int((pairs["outcome"] == pairs["truth"]).sum()),
            "wrong": int((decided & (pairs["outcome"] != pairs["truth"])).sum()),
            "ties": int((~decided).sum()),
            "winner_ab": pairs["winner_ab"].value_counts(dropna=False).to_dict(),
            "winner_ba": pairs["winner_ba"].value_counts(dropna=False).to_dict()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="the bundled model as a judge: parse failures, quality, flip rate")
    ap.add_argument("--n", type=int, default=int(os.environ.get("JUDGE_MEASURE_N", 1000)))
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--free-n", type=int, default=None,
                    help="unguided phase on the first N of the same items (default: all); unguided verdicts run "
                         "to max_tokens far more often, so all 1,000 take several times the guided phase")
    ap.add_argument("--skip", nargs="*", default=[], choices=["guided", "free", "pairwise"])
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from harness.backends.vllm import VLLMBackend
    from harness.runs.judging import Judges

    items, tasks = judge_set(a.n)
    engine = VLLMBackend(use_tqdm=False)
    res = {"n": len(items), "right_share": sum(t for *_, t in items) / len(items)}
    try:
        t0 = time.perf_counter()
        engine.start()
        res["engine_start_s"] = round(time.perf_counter() - t0, 1)
        judges = Judges(run_backend=engine, run_model_spec="bundled")
        phases = [("guided", lambda: grade(items, tasks, judges)), ("pairwise", lambda: pairwise(a.pairs, judges)),
                  ("free", lambda: grade(items[:a.free_n or len(items)], {k: unguided(t) for k, t in tasks.items()},
                                         judges))]
        for name, fn in phases:  # each phase's result is saved as soon as it exists
            if name in a.skip:
                continue
            res[name] = fn()
            print(name, json.dumps(res[name], default=str), flush=True)
            if a.out:
                with open(a.out, "w") as f:
                    json.dump(res, f, indent=1, default=str)
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
