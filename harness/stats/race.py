"""The race: decide which cell (strategy, template, model...) is best with the fewest item
evaluations, looking after every batch without inflating the error.

A pure function over a correctness table (items x cells: 1 right, 0 wrong, NaN not run or errored)
and one shared item order. `race(...)` replays the race look by look; where the table lacks data a
look needs, it stops with status "running" and names the items the live cells need next, so a
runner can fetch them and call it again (a resumed race replays to the same decisions).

Modes
- "sequential" (default): after each batch (`batch` items per live cell), the leader is the live cell
  with the best running accuracy; every other live cell j is compared with it on the items both
  answered, by the paired anytime-valid confidence sequence of harness/stats/sequences.py for
  Delta_j = acc_j - acc_leader. j is eliminated when the whole sequence lies below 0. The race stops
  with a **winner** when one cell remains; with a **tie** when no remaining cell can be `margin` or
  more better than the leader (`tie`, below); **undecided** at `max_items`.
- "naive": the same race with a fixed-n paired Wald interval at every look (NOT valid: it is here to
  measure how often looking at a fixed-n test after every batch names a false winner).
- "halving": sequential halving with a fixed budget of item evaluations (Karnin, Koren & Somekh 2013,
  with the items of earlier rounds reused): ceil(log2 K) rounds; in each, every live cell gets
  floor(budget / (live x rounds)) more items and the better half by accuracy goes on. Always names a
  winner; its error is bounded only by Karnin et al.'s exp(-budget / (8 H2 log2 K)) rate, not by alpha.

The tie (`tie`)
- "leader" (default): every remaining cell j has upper(Delta_j) < margin: none is `margin` or more
  better than the leader, so the leader is within `margin` of the best cell (the indifference zone
  of sequential selection: Bechhofer 1954, Paulson 1964; "epsilon-best" in bandit terms). In the
  verdicts' words: the leader is non-inferior at `margin` to every remaining cell. It is the same
  side of the same sequences as an elimination (upper(Delta_j) < 0), tested at +margin.
- "pairs": every pair of remaining cells has its sequence inside (-margin, +margin): the remaining
  cells are interchangeable, a stronger claim that costs more items (the rule of races before
  2026-12-05; a resumed race whose race.json does not name a rule keeps it).

What the sequential race guarantees (`control`; both hold at every look, whenever it stops)
- control="all" (default): every claim the race makes is right, all at once, with probability
  >= 1 - alpha: each elimination ("j is worse than the leader": acc_j < acc_L), the winner ("better
  than every other cell"), a tie (the leader within margin of every remaining cell, or every pair
  within margin). Every claim is read off one side of one pair's sequence: "j < L" is false only if
  the upper side of Delta_{j,L} missed, "Delta_{j,L} < margin" likewise, "within margin" of a pair
  only if a side missed. Each side of each of the K(K-1)/2 pair sequences is built at
  alpha / (K(K-1)), time-uniformly (so data-dependent leaders, looks at any time and stopping
  whenever are covered), and by the union bound over the K(K-1) sides the chance that any side ever
  misses is at most alpha. Among cells of equal accuracy (the null) a winner is then declared with
  probability at most alpha.
- control="best": the classic racing guarantee (Maron & Moore; successive elimination): a best cell b
  is eliminated with probability <= alpha, and a tie's leader is within margin of b with probability
  >= 1 - alpha. Only the K-1 pairs that involve b matter, each on the side where b's advantage is
  underestimated: "b < L" needs the upper side of Delta_{b,L} to miss, a sole survivor other than b
  needs b eliminated, and a tie is wrong only if upper(Delta_{b,L}) < margin <= Delta_{b,L} (or, for
  "pairs", lower(Delta_{j,b}) > -margin >= Delta_{j,b}), i.e. again the upper side of a pair with b
  missed. So each side is built at alpha / (K-1). Cells tied with b may be eliminated in its favour (a
  winner among equals is "a best cell"); the sequences are narrower, so the race is cheaper.

Target: by default the finite pool of items the order is drawn from (`population="finite"`: the race
answers "what would the full run have found", and the sequences shrink to it as the race nears the
whole pool). `population="infinite"` treats items as i.i.d. draws from a larger population. An item
that errored for a cell is dropped from that cell's pairs, and from the look where a pair first
meets one it uses the i.i.d. sequence (the pool of items both answered is no longer known); both
assume that errors are unrelated to correctness.

>>> import pandas as pd
>>> table = pd.DataFrame({"good": [1] * 200, "bad": [0] * 200, "worse": [0] * 200})
>>> result = race(table, seed=0)
>>> result.status, result.winner, result.items
('winner', 'good', 16)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import numpy as np
import pandas as pd

from harness.stats.race_pairs import METHODS, Pairs

MODES = ("sequential", "naive", "halving")
CONTROLS = ("all", "best", "none")
TIES = ("leader", "pairs")
LOOK_COLUMNS = ["look", "mode", "items", "cell", "n", "accuracy", "leader", "diff", "lower", "upper",
                "status", "event"]


@dataclass(frozen=True)
class RaceResult:
    """The race's looks (`looks`: race.csv) and its decision."""
    looks: pd.DataFrame
    status: str                      # "winner" | "tie" | "undecided" | "running"
    winner: Hashable | None          # the one cell left ("winner"), or halving's pick
    best: Hashable | None            # the winner, else the leader at the last look
    remaining: tuple                 # live cells at the last look
    items: int                       # items per live cell at the last look
    evaluations: int                 # item evaluations spent, summed over cells
    eliminated: dict = field(default_factory=dict)   # cell -> items when it was eliminated
    next_items: tuple = ()           # "running": the items (ids) the live cells need next


def race_order(items: Sequence, seed: int) -> list:
    """The shared seeded item order: a permutation of `items` drawn from `seed`."""
    items = list(items)
    return [items[i] for i in np.random.default_rng(seed).permutation(len(items))]


class _Data:
    """The table in race order, with running sums so a look costs O(cells), not O(items)."""

    def __init__(self, correct: pd.DataFrame, order: list, ran: pd.DataFrame | None):
        self.order, self.cells = order, list(correct.columns)
        self.values = correct.reindex(order)[self.cells].to_numpy(dtype=float)
        answered = ~np.isnan(self.values)
        done = answered if ran is None else \
            ran.reindex(order)[self.cells].fillna(False).to_numpy(dtype=bool) | answered
        self.errored = done & ~answered

        def running(a: np.ndarray) -> np.ndarray:
            return np.vstack([np.zeros((1, a.shape[1])), np.cumsum(a, axis=0)])  # row e: sum of [:e]

        self.right, self.answered = running(np.nan_to_num(self.values)), running(answered)
        self.done, self.n_errored = running(done), running(self.errored)

    def accuracy(self, end: int, live: list[int]) -> dict[int, float]:
        return {c: float(self.right[end, c] / self.answered[end, c]) if self.answered[end, c] else float("nan")
                for c in live}

    def missing(self, end: int, live: list[int]) -> tuple:
        if all(self.done[end, c] == end for c in live):
            return ()
        rows = self.done[1:end + 1, live] - self.done[:end, live]   # 1 where ran
        return tuple(self.order[i] for i in np.flatnonzero((rows < 1).any(axis=1)))


def _check(correct: pd.DataFrame, mode: str, batch: int, alpha: float, margin: float, population: str,
           tie: str) -> None:
    if tie not in TIES:
        raise ValueError(f"unknown tie rule {tie!r}: one of {', '.join(TIES)}")
    if mode not in MODES:
        raise ValueError(f"unknown race mode {mode!r}: one of {', '.join(MODES)}")
    if correct.shape[1] < 2:
        raise ValueError("a race needs two or more cells")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin is an accuracy difference in [0, 1), got {margin}")
    if population not in ("finite", "infinite"):
        raise ValueError(f"population must be 'finite' or 'infinite', got {population!r}")


def race(correct: pd.DataFrame, *, order: Sequence | None = None, seed: int = 0, mode: str = "sequential",
         batch: int = 16, alpha: float = 0.05, margin: float = 0.05, max_items: int | None = None,
         budget: int | None = None, population: str = "finite", method: str = "betting",
         control: str = "all", tie: str = "leader", ran: pd.DataFrame | None = None,
         bounds: bool = True) -> RaceResult:
    """Replay a race over `correct` (index: item ids; columns: cells; 1/0, NaN = not run/errored).

    `order` (default: `race_order(correct.index, seed)`) is the shared item order; `ran` (default:
    not NaN) says which (item, cell) pairs have run, so that an errored item is not asked again.
    `max_items` caps the items per cell (default: all); `budget` is halving's item evaluations;
    `tie`: when the sequential race stops with a tie (module docstring).
    `method`: the sequence ("betting" or "eb", harness/stats/race_pairs.py); the naive mode always
    uses the fixed-n interval. `bounds=False` leaves the betting bounds out of the looks (faster: the
    decisions never need them)."""
    _check(correct, mode, batch, alpha, margin, population, tie)
    data = _Data(correct, list(order) if order is not None else race_order(correct.index, seed), ran)
    K, N = len(data.cells), len(data.order)
    cap = N if max_items is None else max(1, min(int(max_items), N))
    if method not in METHODS[:2]:
        raise ValueError(f"unknown method {method!r}: one of {', '.join(METHODS[:2])}")
    if control not in CONTROLS:
        raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {control!r}")
    # each side of each pair: see the module docstring for why this is enough ("none": alpha/2 a side,
    # every comparison at level alpha as if it were the only one; for comparison only)
    alpha_side = {"all": alpha / (K * (K - 1)), "best": alpha / (K - 1), "none": alpha / 2}[control]
    pairs = Pairs(data.values, data.n_errored, alpha_side=alpha_side, finite=population == "finite",
                  method="naive" if mode == "naive" else method, margin=margin, bounds=bounds)
    if mode == "halving":
        if budget is None or budget < 1:
            raise ValueError("halving needs a budget: the total item evaluations (e.g. 2 x items x cells)")
        return _halving(data, pairs, cap, budget, max(1, math.ceil(math.log2(K))))
    return _sequential(data, pairs, cap, batch, mode, tie)


def _leader(acc: dict[int, float]) -> int:
    """Best running accuracy; ties go to the cell given first (NaN counts as lowest)."""
    return max(acc, key=lambda c: (-1.0 if math.isnan(acc[c]) else acc[c], -c))


class _Log:
    """The looks' rows and the eliminated cells (cell -> (items when eliminated, n, accuracy))."""

    def __init__(self, data: _Data, mode: str):
        self.data, self.mode = data, mode
        self.rows: list[list] = []
        self.out: dict[int, tuple[int, int, float]] = {}

    def look(self, look, end, live, leader, acc, bounds, events) -> None:
        for c in range(len(self.data.cells)):
            if c in live:
                lo, hi, n = bounds.get(c, (float("nan"), float("nan"), int(self.data.answered[end, c])))
                self.rows.append([look, self.mode, end, self.data.cells[c], n, acc[c], c == leader,
                                  acc[c] - acc[leader], lo, hi, "eliminated" if c in events else "live",
                                  events.get(c, "")])
            else:
                items, n, accuracy = self.out[c]
                self.rows.append([look, self.mode, end, self.data.cells[c], n, accuracy, False,
                                  float("nan"), float("nan"), float("nan"), "out", ""])
        for c in events:
            self.out[c] = (end, bounds[c][2], acc[c])

    def result(self, status, winner, best, live, end, missing=()) -> RaceResult:
        cells = self.data.cells
        evaluations = end * len(live) + sum(items for items, _, _ in self.out.values())
        return RaceResult(looks=pd.DataFrame(self.rows, columns=LOOK_COLUMNS), status=status,
                          winner=None if winner is None else cells[winner],
                          best=None if best is None else cells[best], remaining=tuple(cells[c] for c in live),
                          items=end, evaluations=int(evaluations),
                          eliminated={cells[c]: items for c, (items, _, _) in self.out.items()},
                          next_items=tuple(missing))


def _tied(pairs: Pairs, live: list[int], leader: int, end: int, tie: str) -> bool:
    if tie == "pairs":
        return all(pairs.within(i, j, end) for i in live for j in live if i < j)
    return all(pairs.near(c, leader, end) for c in live if c != leader)


def _sequential(data: _Data, pairs: Pairs, cap: int, batch: int, mode: str, tie: str) -> RaceResult:
    live, log = list(range(len(data.cells))), _Log(data, mode)
    end, look, leader = 0, 0, 0
    while end < cap:
        nxt = min(end + batch, cap)
        missing = data.missing(nxt, live)
        if missing:
            return log.result("running", None, leader, live, end, missing)
        end, look = nxt, look + 1
        pairs.ends.append(end)
        acc = data.accuracy(end, live)
        leader = _leader(acc)
        bounds = {c: pairs.bounds(c, leader, end) for c in live if c != leader}
        events = {c: f"eliminated: below {data.cells[leader]}" for c in bounds if pairs.below(c, leader, end)}
        log.look(look, end, live, leader, acc, bounds, events)
        live = [c for c in live if c not in events]
        if len(live) == 1:
            return log.result("winner", live[0], live[0], live, end)
        if _tied(pairs, live, leader, end, tie):
            return log.result("tie", None, _leader(data.accuracy(end, live)), live, end)
    best = _leader(data.accuracy(end, live)) if end else None
    return log.result("undecided", None, best, live, end)


def _halving(data: _Data, pairs: Pairs, cap: int, budget: int, rounds: int) -> RaceResult:
    live, log = list(range(len(data.cells))), _Log(data, "halving")
    end, leader = 0, 0
    for look in range(1, rounds + 1):
        step = budget // (len(live) * rounds)
        if step < 1:
            raise ValueError(f"a budget of {budget} item evaluations is less than one item per cell "
                             f"per round ({len(live)} cells x {rounds} rounds)")
        nxt = min(end + step, cap)
        missing = data.missing(nxt, live)
        if missing:
            return log.result("running", None, leader, live, end, missing)
        end = nxt
        pairs.ends.append(end)
        acc = data.accuracy(end, live)
        leader = _leader(acc)
        ranked = sorted(live, key=lambda c: (-(acc[c] if not math.isnan(acc[c]) else -1.0), c))
        keep = ranked[:math.ceil(len(live) / 2)]
        bounds = {c: pairs.bounds(c, leader, end) for c in live if c != leader}
        log.look(look, end, live, leader, acc, bounds, {c: "eliminated: lower half" for c in live if c not in keep})
        live = keep
        if len(live) == 1:
            break
    best = _leader(data.accuracy(end, live))
    return log.result("winner", best, best, live, end)


def race_sentence(result: RaceResult, *, margin: float = 0.05, tie: str = "leader") -> str:
    """One verdict sentence, e.g. "cot and zero_shot were eliminated after 64 and 128 items;
    few_shot:k=3 and self_consistency:k=5 are within 5 points after 512 items (undecided at the budget)".
    A tie names the leader: with the default rule the claim is "none is `margin` or more better than it"."""
    def names(xs) -> str:
        xs = [str(x) for x in xs]
        return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]

    parts = []
    if result.eliminated:
        cells, items = list(result.eliminated), [str(n) for n in result.eliminated.values()]
        verb = "was" if len(cells) == 1 else "were"
        parts.append(f"{names(cells)} {verb} eliminated after {names(items)} items")
    rest, n = list(result.remaining), result.items
    if result.status == "winner" and len(rest) == 1:
        parts.append(f"{rest[0]} wins after {n} items")
    elif result.status == "winner":
        parts.append(f"{result.winner} is the budget's pick after {n} items (no error guarantee)")
    elif result.status == "tie":
        m, others = f"{margin * 100:g}", [c for c in rest if c != result.best]
        verb = f"{others[0]} is not" if len(others) == 1 else "none of them is"
        parts.append(f"{result.best} leads {names(others)} after {n} items, and {verb} {m} points or more better "
                     f"than {result.best} "
                     f"(a tie: {result.best} is within {m} points of the best)" if tie == "leader" else
                     f"{names(rest)} are within {m} points of each other after {n} items (a tie)")
    elif result.status == "undecided":
        parts.append(f"{names(rest)} are not separated after {n} items (undecided at the budget; "
                     f"{result.best} leads)")
    else:
        parts.append(f"{names(rest)} are still racing after {n} items")
    return "; ".join(parts)
