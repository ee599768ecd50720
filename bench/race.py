"""python -m bench.race [--matrices DIR] [--orders 1000] [--pool N] [--make] [--out FILE]

The race (harness/stats/race.py) simulated on complete correctness matrices that the harness computed
once on the real engine: every cell ran on every item, so each of `--orders` random item orders replays
a race whose full-data answer is known. Per matrix it measures
- how often the race's pick (its winner; else its leader) is the full-data winner or within 1 point;
- the item evaluations it spends, as a share of the full matrix (distribution over orders);
- the null: 8 relabelled copies of one cell (each a random permutation of its items, so all 8 have the
  same accuracy): how often a winner is declared, and how often any cell is eliminated (a false claim);
- the same race with a fixed-n test at every look ("naive": at the sequence's level, and uncorrected at
  0.05 per test), and sequential halving with the budget the sequential race spends at its median;
- the null with 2 copies, where a declared winner is exactly one false elimination.
`--pool N` replays on a pool of N items drawn with replacement from each matrix's rows (a larger pool of
the same kind of items: the items a race needs depend on the cells' gaps, not on the pool's size).
No engine runs here. The matrices live outside the repository (default ../race-matrices beside it, or
HARNESS_RACE_MATRICES); `--make` computes the folders not yet complete, with the arguments in MATRICES
(each folder an ordinary `harness run` folder, --limit 400 --seed 0; one engine for all, under the
shared engine lock), reading the data sets from bench.common.DATA.
The table we measured is in docs/race.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness.stats.race import race

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path(os.environ.get("HARNESS_RACE_MATRICES", ROOT.parent / "race-matrices"))
LIMIT = 400
# matrix -> run folders -> the `harness run` arguments of each (one engine run per folder)
MATRICES: dict[str, dict[str, list[str]]] = {
    "arc_easy": {
        "arc_easy-standard": ["--task", "arc_easy", "--strategy", "zero_shot", "--strategy", "few_shot:k={1,3,5}",
                              "--strategy", "zero_shot:format=chat"],
        "arc_easy-chat": ["--task", "arc_easy_chat", "--strategy", "zero_shot", "--strategy", "zero_shot:guided=true",
                          "--strategy", "few_shot:k=3", "--strategy", "zero_shot:answer_mode=loglikelihood",
                          "--strategy", "few_shot:k=3,answer_mode=loglikelihood"],
    },
    "piqa": {
        "piqa": ["--task", "piqa", "--strategy", "zero_shot", "--strategy", "few_shot:k={1,3,5}",
                 "--strategy", "zero_shot:format=chat", "--strategy", "few_shot:k={1,3},format=chat",
                 "--strategy", "zero_shot:template=multiple_choice.j2"],
    },
    "larger_number": {
        "larger_number": ["--task", "larger_number", "--strategy", "zero_shot", "--strategy", "few_shot:k={1,3,5}",
                          "--strategy", "zero_shot:guided=true", "--strategy", "zero_shot:answer_mode=loglikelihood",
                          "--strategy", "few_shot:k=3,answer_mode=loglikelihood",
                          "--strategy", "zero_shot:format=completion", "--strategy", "few_shot:k=3,format=completion"],
    },
}


def _plan(args: list[str]) -> tuple[list[str], list[str]]:
    """(tasks, strategies) of one folder's `harness run` arguments."""
    pairs = list(zip(args[::2], args[1::2]))
    return [v for k, v in pairs if k == "--task"], [v for k, v in pairs if k == "--strategy"]


def make_here(directory: Path, names: list[str]) -> None:
    """Compute the matrices' run folders that are not complete yet, on ONE engine started once
    (the caller holds the shared engine lock). Each folder is an ordinary run folder: the same as
    `harness run <its arguments> --data-dir DATA --limit 400 --seed 0 --out FOLDER`."""
    from bench.common import DATA
    from harness.api import run
    from harness.backends.vllm import VLLMBackend

    engine = VLLMBackend(None)
    try:
        for name in names:
            for folder, args in MATRICES[name].items():
                out = directory / folder
                meta = out / "run.json"
                if meta.is_file() and json.loads(meta.read_text()).get("status") == "complete":
                    continue
                tasks, strategies = _plan(args)
                start = time.perf_counter()
                run(tasks, strategies, backend=engine, out=out, limit=LIMIT, seed=0, data_dir=DATA,
                    progress=False, latency_calibration=0, latency_probe=0)
                print(f"{out}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    finally:
        engine.close()


def load_matrix(folders: list[Path]) -> pd.DataFrame:
    """items x cells of 0/1 correctness from run folders' predictions.parquet; a cell is
    `task/strategy` when the folders hold several tasks. Items any cell lacks (or errored on) are
    dropped, so the matrix is complete."""
    preds = pd.concat([pd.read_parquet(f / "predictions.parquet") for f in folders], ignore_index=True)
    several = preds["task"].nunique() > 1
    preds["cell"] = (preds["task"] + "/" + preds["strategy"]) if several else preds["strategy"]
    preds["correct"] = preds["correct"].astype(float).where(preds["error"].isna() | (preds["error"] == ""))
    table = preds.pivot_table(index="example_id", columns="cell", values="correct", aggfunc="first")
    cells = list(dict.fromkeys(preds["cell"]))
    return table[cells].dropna().astype(float)


def resample(matrix: pd.DataFrame, items: int, seed: int = 0) -> pd.DataFrame:
    """A pool of `items` rows drawn with replacement from the matrix's rows (each row one item's answers
    by every cell, so the cells' joint distribution is kept): what the race does on a larger pool of the
    same kind of items, without running the engine on more of them."""
    rows = np.random.default_rng(seed).integers(0, len(matrix), size=items)
    return matrix.iloc[rows].set_axis([f"r{i}" for i in range(items)])


def _summary(values: list[float]) -> dict[str, float]:
    q = np.percentile(values, [5, 25, 50, 75, 95])
    return {"mean": float(np.mean(values)), "p5": q[0], "p25": q[1], "median": q[2], "p75": q[3], "p95": q[4],
            "max": float(np.max(values))}


def simulate(matrix: pd.DataFrame, *, orders: int = 1000, alpha: float = 0.05, margin: float = 0.05,
             batch: int = 16, tolerance: float = 0.01) -> dict:
    """The figures of one matrix over `orders` item orders (order r is race_order(items, r))."""
    K, N = matrix.shape[1], matrix.shape[0]
    full = matrix.mean()
    best = float(full.max())
    near = {c for c, a in full.items() if a >= best - tolerance - 1e-12}
    kw = dict(alpha=alpha, margin=margin, batch=batch)
    out: dict = {"cells": K, "items": N, "accuracy": {c: round(float(a), 4) for c, a in full.items()},
                 "full_winner": str(full.idxmax()), "orders": orders}
    # naive: a fixed-n paired interval at every look, at the sequence's own level (alpha/(K(K-1)) a side),
    # and uncorrected (control="none", 0.025 a side: "significant at 0.05" per test, as users do)
    # tie="pairs": the earlier, stronger tie rule (every remaining pair within the margin)
    variants = {"sequential": ("sequential", "betting", "all", "leader"),
                "sequential_best": ("sequential", "betting", "best", "leader"),
                "sequential_pairs": ("sequential", "betting", "all", "pairs"),
                "sequential_eb": ("sequential", "eb", "all", "leader"),
                "naive": ("naive", "betting", "all", "leader"),
                "naive_uncorrected": ("naive", "betting", "none", "leader")}
    for name, (mode, method, control, tie) in variants.items():
        res = [race(matrix, seed=r, mode=mode, method=method, control=control, tie=tie, bounds=False, **kw)
               for r in range(orders)]
        share = [r.evaluations / (K * N) for r in res]
        out[name] = {
            "pick_within_1pt": float(np.mean([r.best in near for r in res])),
            "winner_declared": float(np.mean([r.status == "winner" for r in res])),
            "false_winner": float(np.mean([r.status == "winner" and r.winner not in near for r in res])),
            "tie": float(np.mean([r.status == "tie" for r in res])),
            "undecided": float(np.mean([r.status == "undecided" for r in res])),
            "near_best_all_eliminated": float(np.mean([not (near - set(r.eliminated)) for r in res])),
            "evaluations": _summary(share),
        }
    budget = int(round(out["sequential"]["evaluations"]["median"] * K * N))
    halving = [race(matrix, seed=r, mode="halving", budget=budget, bounds=False) for r in range(orders)]
    out["halving"] = {"budget": budget, "budget_share": budget / (K * N),
                      "pick_within_1pt": float(np.mean([r.winner in near for r in halving])),
                      "evaluations": _summary([r.evaluations / (K * N) for r in halving])}
    column = matrix[full.idxmax()].to_numpy()
    out["null"] = _null(column, orders=orders, copies=8, **kw)
    out["null2"] = _null(column, orders=orders, copies=2, **kw)
    return out


def _null(column: np.ndarray, *, orders: int, copies: int, alpha: float, **kw) -> dict:
    """`copies` copies of one cell, each with its items relabelled at random (equal accuracy on the
    pool): a declared winner, or any elimination, is a false claim."""
    out = {}
    variants = {"sequential": ("sequential", "all"), "naive": ("naive", "all"), "naive_uncorrected": ("naive", "none")}
    for name, (mode, control) in variants.items():
        rng = np.random.default_rng(12345)
        winner = eliminated = 0
        for r in range(orders):
            table = pd.DataFrame({f"copy{k}": rng.permutation(column) for k in range(copies)})
            res = race(table, seed=r, mode=mode, alpha=alpha, control=control, bounds=False, **kw)
            winner += res.status == "winner"
            eliminated += bool(res.eliminated)
        out[name] = {"winner_declared": winner / orders, "any_eliminated": eliminated / orders}
    return out


def table(results: dict[str, dict]) -> str:
    """The two Markdown tables of docs/race.md: the race on real matrices, then the null."""
    pct = "{:.1%}".format
    lines = ["| matrix | cells x items | full-data winner | pick within 1 pt (target >= 95 %) "
             "| winner / tie / undecided | evaluations: median (p5-p95), target median <= 50 % "
             "| control='best': pick / median evaluations "
             "| tie='pairs' (every pair within the margin): pick / median evaluations "
             "| empirical-Bernstein sequence instead: pick / median evaluations "
             "| naive: pick within 1 pt / false winner | naive uncorrected: pick / false winner "
             "| halving at the race's median spend: pick within 1 pt |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        s, n, u, h, b = r["sequential"], r["naive"], r["naive_uncorrected"], r["halving"], r["sequential_eb"]
        sb, sp = r["sequential_best"], r["sequential_pairs"]
        e = s["evaluations"]
        lines.append(
            f"| {name} | {r['cells']} x {r['items']} | {r['full_winner']} ({pct(r['accuracy'][r['full_winner']])}) "
            f"| {pct(s['pick_within_1pt'])} | {s['winner_declared']:.0%} / {s['tie']:.0%} / {s['undecided']:.0%} "
            f"| {pct(e['median'])} ({e['p5']:.0%}-{e['p95']:.0%}) "
            f"| {pct(sb['pick_within_1pt'])} / {pct(sb['evaluations']['median'])} "
            f"| {pct(sp['pick_within_1pt'])} / {pct(sp['evaluations']['median'])} "
            f"| {pct(b['pick_within_1pt'])} / {pct(b['evaluations']['median'])} "
            f"| {pct(n['pick_within_1pt'])} / {pct(n['false_winner'])} "
            f"| {pct(u['pick_within_1pt'])} / {pct(u['false_winner'])} "
            f"| {pct(h['pick_within_1pt'])} ({h['budget_share']:.0%} of the matrix) |")
    lines += ["", "| null (copies of the matrix's best cell) | sequential: winner declared (target <= 5 %) "
              "| sequential: any elimination | naive: winner / any elimination "
              "| naive uncorrected: winner / any elimination |", "|---|---|---|---|---|"]
    for name, r in results.items():
        for key, label in (("null", "8 copies"), ("null2", "2 copies")):
            z = r[key]
            lines.append(f"| {name}, {label} | {pct(z['sequential']['winner_declared'])} "
                         f"| {pct(z['sequential']['any_eliminated'])} "
                         f"| {pct(z['naive']['winner_declared'])} / {pct(z['naive']['any_eliminated'])} "
                         f"| {pct(z['naive_uncorrected']['winner_declared'])} / "
                         f"{pct(z['naive_uncorrected']['any_eliminated'])} |")
    return "\n".join(lines)


def _make(directory: Path, names: list[str]) -> None:
    """Re-run this module under the shared engine lock, computing what is missing in one process."""
    cmd = ["flock", "/tmp/engine.lock", sys.executable, "-m", "bench.race", "--make-here",
           "--only", ",".join(names), "--matrices", str(directory)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.race", description=__doc__.split("\n\n")[1])
    p.add_argument("--matrices", type=Path, default=DEFAULT_DIR, help=f"folder of run folders (default {DEFAULT_DIR})")
    p.add_argument("--only", default=",".join(MATRICES), help="matrices to use, comma-separated")
    p.add_argument("--orders", type=int, default=1000, help="random item orders per figure")
    p.add_argument("--make", action="store_true", help="(re)compute the matrices on the real engine first")
    p.add_argument("--make-here", action="store_true", help=argparse.SUPPRESS)  # --make, under the lock
    p.add_argument("--pool", type=int, help="resample each matrix's items to a pool of this many (bench.race.resample)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    a = p.parse_args(argv)
    names = [n for n in a.only.split(",") if n]
    unknown = [n for n in names if n not in MATRICES]
    if unknown:
        p.error(f"unknown matrix {unknown[0]!r}: one of {', '.join(MATRICES)}")
    if a.make_here:
        make_here(a.matrices, names)
        return 0
    if a.make:
        _make(a.matrices, names)
    results = {}
    for name in names:
        folders = [a.matrices / f for f in MATRICES[name]]
        present = [f for f in folders if (f / "predictions.parquet").exists()]
        if not present:
            print(f"{folders[0]}: no predictions.parquet (fix: python -m bench.race --make --only {name} "
                  f"--matrices {a.matrices})", file=sys.stderr)
            return 2
        if len(present) < len(folders):  # measured on what is there, and named so
            name = f"{name} (only {', '.join(f.name for f in present)})"
        matrix = load_matrix(present)
        if a.pool:
            matrix, name = resample(matrix, a.pool), f"{name} (resampled to {a.pool} items)"
        start = time.perf_counter()
        results[name] = simulate(matrix, orders=a.orders)
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"{name}: {results[name]['cells']} cells x {results[name]['items']} items, "
              f"{results[name]['seconds']} s", file=sys.stderr, flush=True)
    print(table(results))
    if a.out:
        a.out.write_text(json.dumps(results, indent=1, default=float))
        print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
