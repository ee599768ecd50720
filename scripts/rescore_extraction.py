"""Re-score a run folder's outputs with two extraction codes, without rerunning the engine.

    git show d084fdb:harness/scoring/extract.py > /tmp/old_extract.py
    python scripts/rescore_extraction.py results/RUN --old /tmp/old_extract.py [--data-dir ../shared/data]

Prints accuracy per task x strategy with the old and the new extraction (exact-match scoring of the
first output; self-consistency rows are skipped) and lists every row whose answer changed, grouped by
the new rule that fired."""
from __future__ import annotations

import argparse
import importlib.util
from collections import defaultdict

import pandas as pd

import harness
from harness.scoring.extract import normalize_gold
from harness.strategy.strategies import extract_answer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--old", required=True, help="path to the old harness/scoring/extract.py")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--show", type=int, default=160, help="characters of output shown per changed row")
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("old_extract", a.old)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    preds = pd.read_parquet(f"{a.run_dir}/predictions.parquet")
    preds = preds[~preds["strategy"].astype(str).str.startswith("self_consistency")]
    preds = preds[preds["error"].isna() | (preds["error"].astype(str) == "")]
    tasks = {t: harness.load_task(t, data_dir=a.data_dir) for t in preds["task"].unique()}
    rows, changed = [], defaultdict(list)
    for r in preds.itertuples():
        task = tasks[r.task]
        if task.spec.answer_type == "json" or r.answer_mode != "generate":
            continue
        ex = next(e for e in task.examples if e.id == r.example_id)
        out = r.output or ""
        a_old = old.extract(task.spec.answer_type, out, labels=ex.labels, pattern=task.spec.extract_pattern)
        got = extract_answer(task, ex, out)
        gold = normalize_gold(task.spec.answer_type, ex.gold)
        rows.append({"task": r.task, "strategy": r.strategy, "old": a_old == gold and a_old is not None,
                     "new": got.answer == gold and got.answer is not None})
        if a_old != got.answer:
            changed[got.rule].append((r.task, r.strategy, r.example_id, a_old, got.answer, gold, out))
    df = pd.DataFrame(rows)
    acc = df.groupby(["task", "strategy"]).agg(n=("old", "size"), acc_old=("old", "mean"), acc_new=("new", "mean"))
    acc["delta"] = acc["acc_new"] - acc["acc_old"]
    print(acc.to_string(float_format=lambda x: f"{x:.3f}"))
    print(f"\noverall: n={len(df)} old={df['old'].mean():.4f} new={df['new'].mean():.4f} "
          f"changed answers={sum(len(v) for v in changed.values())}")
    for rule, items in sorted(changed.items()):
        print(f"\n## rule {rule}: {len(items)} changed")
        for t, s, i, ao, an, g, out in items:
            mark = "fixed" if an == g else ("broke" if ao == g else "still wrong")
            snippet = out[-a.show:].replace("\n", "\\n")
            print(f"- {t} | {s} | {i}: old={ao!r} new={an!r} gold={g!r} ({mark}) …{snippet}")


if __name__ == "__main__":
    main()
