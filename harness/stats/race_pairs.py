"""The race's pairwise comparisons: for two cells i, j, on the items of the race order both answered,
the confidence sequence for Delta_ij = acc_i - acc_j, and the two decisions the race takes from it
(j is below i; i and j are within the margin).

Methods (harness/stats/sequences.py):
- "betting" (default): the betting capital of Waudby-Smith & Ramdas. A decision is a test of one
  value: "upper(Delta_ij) < 0" is the capital against Delta = 0 crossing 1/alpha at a look, so it is
  exact and costs one running product; the bounds written to race.csv are its inversion by
  bisection (to 2**-14), intersected over the looks.
- "eb": the closed-form empirical-Bernstein sequence (intersected over every item).
- "naive": a fixed-n paired Wald interval at each look (not intersected, not valid: for comparison).
Sequences are computed once per pair over the whole order: a sequence at item t depends only on the
first t items, so later data never changes an earlier look.
"""
from __future__ import annotations

import numpy as np

from harness.stats.sequences import (betting_log_capital, betting_lower, fixed_n_interval,
                                     paired_confidence_sequence)

METHODS = ("betting", "eb", "naive")


class Pairs:
    """`values`: items (in race order) x cells, 1/0, NaN = not run or errored; `n_errored`: running
    count of errored items per cell (row e: errors among the first e items). Each side of each
    sequence has error alpha_side. `ends` is appended by the race: the looks so far (items)."""

    def __init__(self, values: np.ndarray, n_errored: np.ndarray, *, alpha_side: float, finite: bool,
                 method: str, margin: float, bounds: bool = True):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: one of {', '.join(METHODS)}")
        self.values, self.n_errored = values, n_errored
        self.alpha_side, self.finite, self.method, self.margin = alpha_side, finite, method, margin
        self.want_bounds = bounds or method != "betting"
        self.ends: list[int] = []
        self.cache: dict[tuple, dict] = {}
        self.bisected: dict[tuple, tuple[float, float]] = {}
        if not np.isnan(values).any():  # a complete table (the simulations): every pair at once
            self._all_pairs()

    # -- per pair: the data and its sequences, over the whole order
    def _key(self, i: int, j: int, end: int) -> tuple[tuple, bool]:
        (p, q), flip = ((i, j), False) if i < j else ((j, i), True)
        # the finite-pool sequence while neither cell has errored in the look's items; an error makes
        # the pool of items both answered unknown, so from then on the pair uses the i.i.d. one
        finite = self.finite and not (self.n_errored[end, p] or self.n_errored[end, q])
        return (p, q, finite), flip

    def _compute(self, x: np.ndarray, population: int | None) -> dict:
        """x = (a - b + 1) / 2 (time on the last axis)."""
        a2 = self.alpha_side
        if self.method == "naive":
            lo, hi = fixed_n_interval(2 * x - 1, np.zeros_like(x), alpha=2 * a2)
            return {"lo": lo, "hi": hi}
        if self.method == "eb":
            lo, hi = paired_confidence_sequence(2 * x - 1, np.zeros_like(x), alpha=2 * a2, population=population)
            return {"lo": lo, "hi": hi}
        crit = np.log(1 / a2)
        m = self.margin

        def crossed(y: np.ndarray, d0: float) -> np.ndarray:  # lower(mean of y, in Delta units) > d0
            return betting_log_capital(y, (d0 + 1) / 2, alpha=a2, population=population) >= crit

        return {"x": x, "pop": population, "lo>0": crossed(x, 0.0), "hi<0": crossed(1 - x, 0.0),
                "lo>-m": crossed(x, -m), "hi<m": crossed(1 - x, -m)}

    def _all_pairs(self) -> None:
        K, N = self.values.shape[1], self.values.shape[0]
        p, q = np.triu_indices(K, k=1)
        x = (self.values[:, p].T - self.values[:, q].T + 1) / 2
        seqs = self._compute(x, N if self.finite else None)
        pos = np.arange(1, N + 1)
        for k, (pp, qq) in enumerate(zip(p.tolist(), q.tolist())):
            self.cache[(pp, qq, self.finite)] = {name: (v[k] if isinstance(v, np.ndarray) else v)
                                                 for name, v in seqs.items()} | {"pos": pos}

    def _seq(self, key: tuple) -> dict:
        if key not in self.cache:
            p, q, finite = key
            a, b = self.values[:, p], self.values[:, q]
            both = ~np.isnan(a) & ~np.isnan(b)
            seq = {"pos": np.cumsum(both)}
            if both.any():
                seq |= self._compute((a[both] - b[both] + 1) / 2, len(a) if finite else None)
            self.cache[key] = seq
        return self.cache[key]

    @staticmethod
    def _n(seq: dict, end: int) -> int:
        return int(seq["pos"][end - 1]) if end > 0 else 0

    # -- what the race asks
    def below(self, i: int, j: int, end: int) -> bool:
        """upper(Delta_ij) < 0 at the look `end`: i is worse than j."""
        key, flip = self._key(i, j, end)
        seq = self._seq(key)
        if self.method != "betting":
            lo, hi, _ = self.bounds(i, j, end)
            return hi < 0
        return self._ever(seq, "lo>0" if flip else "hi<0", end)

    def within(self, i: int, j: int, end: int) -> bool:
        """-margin < lower(Delta_ij) and upper(Delta_ij) < margin at the look `end`."""
        key, _ = self._key(i, j, end)
        seq = self._seq(key)
        if self.method != "betting":
            lo, hi, _ = self.bounds(i, j, end)
            return -self.margin < lo and hi < self.margin
        return self._ever(seq, "lo>-m", end) and self._ever(seq, "hi<m", end)

    def near(self, i: int, j: int, end: int) -> bool:
        """upper(Delta_ij) < margin at the look `end`: i is not `margin` or more better than j (one side:
        the same side as `below`, tested at +margin instead of 0)."""
        key, flip = self._key(i, j, end)
        seq = self._seq(key)
        if self.method != "betting":
            lo, hi, _ = self.bounds(i, j, end)
            return hi < self.margin
        return self._ever(seq, "lo>-m" if flip else "hi<m", end)

    def _ever(self, seq: dict, name: str, end: int) -> bool:
        """Did the capital cross at any look up to `end` (the sequence intersected over the looks)?
        Looks only grow, so each (pair, test) remembers how far it has looked."""
        if name not in seq:
            return False
        crossed, memo = seq[name], seq.setdefault("memo", {})
        done, hit = memo.get(name, (0, False))
        ends = [e for e in self.ends if e <= end]
        for e in ends[done:]:
            n = self._n(seq, e)
            hit = hit or (n > 0 and bool(crossed[n - 1]))
        memo[name] = (len(ends), hit)
        return hit

    def bounds(self, i: int, j: int, end: int) -> tuple[float, float, int]:
        """(lower, upper, n) of Delta_ij on the items of order[:end] both answered; NaN bounds when
        the race runs without them (the simulations)."""
        key, flip = self._key(i, j, end)
        seq = self._seq(key)
        n = self._n(seq, end)
        if n == 0:
            return -1.0, 1.0, 0
        if not self.want_bounds:
            return float("nan"), float("nan"), n
        if self.method == "betting":
            lo, hi = -1.0, 1.0
            for look in sorted({self._n(seq, e) for e in self.ends if e <= end} - {0}):
                l_k, h_k = self._bisect(key, seq, look)
                lo, hi = max(lo, l_k), min(hi, h_k)
        else:
            lo, hi = float(seq["lo"][n - 1]), float(seq["hi"][n - 1])
        return (-hi, -lo, n) if flip else (lo, hi, n)

    def _bisect(self, key: tuple, seq: dict, n: int) -> tuple[float, float]:
        if (key, n) not in self.bisected:
            x, pop = seq["x"][:n], seq["pop"]
            lower = betting_lower(x, [n], alpha=self.alpha_side, population=pop)[0]
            upper = 1 - betting_lower(1 - x, [n], alpha=self.alpha_side, population=pop)[0]
            self.bisected[(key, n)] = (2 * float(lower) - 1, 2 * float(upper) - 1)
        return self.bisected[(key, n)]
