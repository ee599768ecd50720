"""A small version of bench/coverage.py: the score interval's coverage and the family's simultaneous
coverage in a few settings (the full tables: python -m bench.coverage, docs/bench.md)."""
from __future__ import annotations

import numpy as np

from bench.coverage import family_coverage, pair_coverage


def test_single_interval_covers_near_nominal():
    rng = np.random.default_rng(11)
    for n, pa, pb, disc in [(50, 0.7, 0.6, 0.2), (200, 0.5, 0.5, 0.4), (1000, 0.2, 0.2, 0.1)]:
        cov = pair_coverage(n, pa, pb, disc, reps=600, rng=rng)
        assert 0.92 <= cov <= 0.98, (n, pa, pb, disc, cov)  # 95 % +- 3 points (600 datasets: SE 0.9)


def test_family_intervals_cover_simultaneously():
    rng = np.random.default_rng(12)
    for accs, n in [((0.72, 0.60, 0.48, 0.40), 50), ((0.9, 0.85, 0.8, 0.2), 200)]:
        r = family_coverage(accs, n, reps=400, rho=0.3, rng=rng)
        assert r["simultaneous"] >= 0.93, r  # >= 95 % by construction; 400 datasets: SE 1.1 points
