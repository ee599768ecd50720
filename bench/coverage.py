"""Coverage of the paired score intervals, and the clustered null simulation (issue 22).

    python -m bench.coverage                 # the full tables (2,000 datasets per setting), ~1 min
    python -m bench.coverage --reps 200      # a quick look

Table 1, one pair at 95 %: n in {30, 50, 200, 1000} x accuracies 0.2-0.9 x discordance 5-40 %;
datasets are multinomial draws of the paired 2 x 2 table, and the row says how often Tango's interval
(harness.stats.paired.score_interval) covers the true difference.
Table 2, four strategies (six pairs, the report's family intervals: Bonferroni level, Holm's cut at 0): how often all six
intervals cover at once (simultaneous) and the share of single intervals that cover (marginal).
Table 3, the clustered null: 50 items x 10 rows, intra-cluster correlation 0.7, no true difference:
how often the naive paired test and the clustered one reject at 0.05.
The tests run small versions (tests/test_coverage.py); docs/bench.md has the full tables.
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from harness.stats.cluster import clustered_paired_test
from harness.stats.paired import score_interval, score_p_value

NS = (30, 50, 200, 1000)
PAIRS = ((0.2, 0.2), (0.5, 0.4), (0.7, 0.6), (0.5, 0.5), (0.9, 0.8), (0.9, 0.9))
DISCORDANCE = (0.05, 0.1, 0.2, 0.4)
FAMILIES = {"larger_number (72/60/48/40)": (0.72, 0.60, 0.48, 0.40), "global null (4 x 50)": (0.5,) * 4,
            "one far (90/85/80/20)": (0.9, 0.85, 0.8, 0.2), "close (30/27/25/22)": (0.30, 0.27, 0.25, 0.22)}


def cell_probs(acc_a: float, acc_b: float, discordance: float) -> tuple[float, float, float, float] | None:
    """(both right, only A, only B, both wrong) with these accuracies and discordance; None if impossible."""
    d = acc_a - acc_b
    p10, p01 = (discordance + d) / 2, (discordance - d) / 2
    p11, p00 = acc_a - p10, 1 - acc_a - p01
    probs = (p11, p10, p01, p00)
    return probs if min(probs) >= -1e-12 else None


def pair_coverage(n: int, acc_a: float, acc_b: float, discordance: float, *, reps: int, rng,
                  alpha: float = 0.05) -> float:
    probs = cell_probs(acc_a, acc_b, discordance)
    counts = rng.multinomial(n, np.clip(probs, 0, None), size=reps)
    bc, inv = np.unique(counts[:, 1:3], axis=0, return_inverse=True)  # one interval per distinct (b, c)
    lo, hi = score_interval(bc[:, 0], bc[:, 1], n, alpha)
    truth = acc_a - acc_b
    return float(((lo[inv.ravel()] <= truth) & (truth <= hi[inv.ravel()])).mean())


def strategies_correct(accs, n: int, *, reps: int, rho: float, rng) -> np.ndarray:
    """(reps, k, n) correctness: each strategy reads a shared uniform with probability rho, else its own,
    so accuracies are exact and pairs agree more as rho grows."""
    k = len(accs)
    shared = rng.random((reps, 1, n))
    own = rng.random((reps, k, n))
    u = np.where(rng.random((reps, k, n)) < rho, shared, own)
    return u < np.asarray(accs)[None, :, None]


def family_bounds(b: np.ndarray, c: np.ndarray, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """harness.stats.paired.family_intervals over each row (one dataset) of (reps, m) counts; the Bonferroni
    intervals are computed once per distinct (b, c), then each row gets Holm's truncation."""
    bc, inv = np.unique(np.stack([b.ravel(), c.ravel()], 1), axis=0, return_inverse=True)
    lo, hi = score_interval(bc[:, 0], bc[:, 1], n, alpha / b.shape[1])
    lo, hi = lo[inv.ravel()].reshape(b.shape), hi[inv.ravel()].reshape(b.shape)
    p = score_p_value(b, c)
    m = b.shape[1]
    srt = np.sort(p, axis=1)
    adj = np.maximum.accumulate(np.minimum(1, (m - np.arange(m)) * srt), axis=1)  # Holm, sorted order
    rank = np.argsort(np.argsort(p, axis=1, kind="stable"), axis=1, kind="stable")
    p_holm = np.take_along_axis(adj, rank, axis=1)
    d = b - c
    cut = (p_holm < alpha) & (lo <= 0) & (hi >= 0)
    lo = np.where(cut & (d > 0), np.finfo(float).eps, lo)
    hi = np.where(cut & (d < 0), -np.finfo(float).eps, hi)
    return lo, hi


def family_coverage(accs, n: int, *, reps: int, rho: float, rng, alpha: float = 0.05) -> dict:
    x = strategies_correct(accs, n, reps=reps, rho=rho, rng=rng)
    pairs = list(itertools.combinations(range(len(accs)), 2))
    b = np.stack([(x[:, i] & ~x[:, j]).sum(1) for i, j in pairs], axis=1)
    c = np.stack([(~x[:, i] & x[:, j]).sum(1) for i, j in pairs], axis=1)
    lo, hi = family_bounds(b, c, n, alpha)
    truth = np.array([accs[i] - accs[j] for i, j in pairs])[None, :]
    cover = (lo <= truth) & (truth <= hi)
    return {"simultaneous": float(cover.all(1).mean()), "marginal": float(cover.mean()),
            "discordance": float(((b + c) / n).mean())}


def null_clustered(reps: int, *, clusters: int = 50, rows: int = 10, icc: float = 0.7, rng) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) 0/1 arrays of shape (reps, clusters * rows) with no true difference: each cluster leans to A
    or to B by h (P(right) = 0.5 +- h), with h set so the row differences' intra-cluster correlation is
    `icc`: ICC = 4 h^2 / (0.5 + 2 h^2)."""
    h = np.sqrt(0.5 * icc / (4 - 2 * icc))
    sign = np.where(rng.random((reps, clusters, 1)) < 0.5, 1.0, -1.0)
    a = rng.random((reps, clusters, rows)) < 0.5 + sign * h
    b = rng.random((reps, clusters, rows)) < 0.5 - sign * h
    return a.reshape(reps, -1), b.reshape(reps, -1)


def null_rejections(reps: int, *, rng, alpha: float = 0.05, clusters: int = 50, rows: int = 10,
                    icc: float = 0.7) -> dict:
    a, b = null_clustered(reps, clusters=clusters, rows=rows, icc=icc, rng=rng)
    naive = score_p_value((a & ~b).sum(1), (~a & b).sum(1)) < alpha
    groups = np.repeat(np.arange(clusters), rows)
    d = a.astype(float) - b.astype(float)
    clustered = np.array([clustered_paired_test(row, groups, alpha=alpha)["p"] < alpha for row in d])
    return {"naive": float(naive.mean()), "clustered": float(clustered.mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    print(f"Table 1: one pair, Tango score interval at 95 %, {a.reps} datasets per setting (coverage %)")
    print("| acc A | acc B | discordance | " + " | ".join(f"n = {n}" for n in NS) + " |")
    print("|---|---|---|" + "---|" * len(NS))
    for (pa, pb), disc in itertools.product(PAIRS, DISCORDANCE):
        if cell_probs(pa, pb, disc) is None:
            continue
        cov = [pair_coverage(n, pa, pb, disc, reps=a.reps, rng=rng) for n in NS]
        print(f"| {pa:.2f} | {pb:.2f} | {disc:.0%} | " + " | ".join(f"{100 * c:.1f}" for c in cov) + " |")
    print(f"\nTable 2: four strategies, six pairs, Bonferroni-level intervals with Holm's cut at 0 (family alpha 0.05), {a.reps} datasets "
          "per setting: simultaneous / marginal coverage % (mean discordance)")
    print("| accuracies | rho | " + " | ".join(f"n = {n}" for n in NS) + " |")
    print("|---|---|" + "---|" * len(NS))
    for (name, accs), rho in itertools.product(FAMILIES.items(), (0.3, 0.8)):
        cells = []
        for n in NS:
            r = family_coverage(accs, n, reps=a.reps, rho=rho, rng=rng)
            cells.append(f"{100 * r['simultaneous']:.1f} / {100 * r['marginal']:.1f} ({100 * r['discordance']:.0f} %)")
        print(f"| {name} | {rho} | " + " | ".join(cells) + " |")
    r = null_rejections(a.reps, rng=rng)
    print(f"\nTable 3: clustered null, 50 items x 10 rows, ICC 0.7, {a.reps} datasets: rejections at 0.05: "
          f"naive {100 * r['naive']:.1f} %, clustered {100 * r['clustered']:.1f} %")
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
