"""The race (harness/stats/race.py): its looks against the sequences and accuracies computed directly,
its error rate by Monte Carlo (a best cell is eliminated, or a winner is declared among equals, at
most alpha of the time, while the naive fixed-n race does so far more often), halving's budget, and
a race fed one batch at a time (as a runner or a resume feeds it) ending exactly as the complete one."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.stats.race import race, race_order, race_sentence
from harness.stats.sequences import paired_betting_sequence, paired_confidence_sequence


def _table(accs, n=300, seed=0, shared=0.5) -> pd.DataFrame:
    """Correlated cells: an item's difficulty is shared, so paired differences are informative."""
    rng = np.random.default_rng(seed)
    z = rng.random(n)
    return pd.DataFrame({f"c{i}": ((shared * z + (1 - shared) * rng.random(n)) < p).astype(float)
                         for i, p in enumerate(accs)}, index=[f"item{i}" for i in range(n)])


def _mc(rate: float, reps: int) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / reps)


@pytest.mark.parametrize("method", ["betting", "eb"])
def test_looks_agree_with_direct_computation(method):
    table = _table([0.8, 0.75, 0.5, 0.3], n=240)
    res = race(table, seed=4, batch=16, alpha=0.05, margin=0.05, method=method)
    order = race_order(table.index, 4)
    assert res.looks["items"].max() == res.items and res.status in ("winner", "tie", "undecided")
    for _, row in res.looks[res.looks.status != "out"].iterrows():
        items = order[:row["items"]]
        assert row["accuracy"] == pytest.approx(table.loc[items, row["cell"]].mean())
        look = res.looks[(res.looks.look == row["look"]) & res.looks.leader]
        leader = look["cell"].iloc[0]
        assert table.loc[items, leader].mean() >= row["accuracy"]       # the leader leads
        if row["cell"] == leader:
            continue
        a, b = table.loc[order, row["cell"]].to_numpy(), table.loc[order, leader].to_numpy()
        if method == "eb":   # intersected over every item
            lo, hi = paired_confidence_sequence(a, b, alpha=2 * 0.05 / 12, population=len(order))
            expect = (lo[row["items"] - 1], hi[row["items"] - 1])
        else:                # intersected over the looks
            looks = list(range(16, row["items"] + 1, 16))
            lo, hi = paired_betting_sequence(a, b, looks, alpha=2 * 0.05 / 12, population=len(order))
            expect = (lo[-1], hi[-1])
        assert (row["lower"], row["upper"]) == pytest.approx(expect, abs=1e-9)
        assert (row["status"] == "eliminated") == (row["upper"] < 0)
    eliminated = res.looks[res.looks.status == "eliminated"]
    assert dict(zip(eliminated["cell"], eliminated["items"])) == res.eliminated
    n_out = sum(res.eliminated.values())
    assert res.evaluations == n_out + res.items * len(res.remaining)
    assert res.winner in (None, "c0") and "c3" in res.eliminated


def test_a_clear_winner_wins_early_and_the_sentence_says_so():
    table = pd.DataFrame({"good": [1.0] * 200, "bad": [0.0] * 200, "worse": [0.0] * 200})
    res = race(table, seed=1)
    assert (res.status, res.winner, res.items) == ("winner", "good", 16)
    assert res.evaluations == 48 and res.evaluations < 3 * 200
    assert race_sentence(res) == "bad and worse were eliminated after 16 and 16 items; good wins after 16 items"


def test_sentence_for_an_undecided_race():
    table = _table([0.6, 0.6, 0.1], n=400, seed=2)
    res = race(table, seed=0, margin=0.05, max_items=64)
    assert res.status == "undecided" and set(res.remaining) == {"c0", "c1"}
    assert race_sentence(res).startswith("c2 was eliminated after ")
    assert "c0 and c1 are not separated after 64 items (undecided at the budget; " in race_sentence(res)


def test_identical_cells_tie_within_the_margin():
    col = _table([0.6], n=400, seed=3)["c0"]
    table = pd.DataFrame({"a": col, "b": col, "c": col})
    res = race(table, seed=0, margin=0.05)
    assert res.status == "tie" and res.items < 400 and not res.eliminated


def test_a_tie_is_the_leader_within_the_margin_of_every_remaining_cell():
    """tie="leader" stops at the first look where every remaining cell's upper bound against the leader
    (race.csv's `upper`) is below the margin; tie="pairs" needs every pair inside +-margin, later."""
    table = _table([0.62, 0.61, 0.60, 0.3], n=400, seed=5, shared=0.9)
    res = race(table, seed=0, margin=0.05)
    assert res.status == "tie" and "c3" in res.eliminated and res.best in res.remaining
    live = res.looks[(res.looks.status == "live") & ~res.looks.leader]
    worst = live.groupby("look")["upper"].max()     # the bisected bounds: to 2**-14
    assert worst.iloc[-1] < 0.05 + 1e-4 and (worst.iloc[:-1] >= 0.05 - 1e-4).all()
    assert (res.best, res.remaining, res.eliminated) == ("c0", ("c0", "c1", "c2"), {"c3": 48})
    assert race_sentence(res, margin=0.05) == (
        f"c3 was eliminated after 48 items; c0 leads c1 and c2 after {res.items} items, and none of them is 5 points "
        "or more better than c0 (a tie: c0 is within 5 points of the best)")
    pairs = race(table, seed=0, margin=0.05, tie="pairs")
    assert pairs.status == "tie" and pairs.items > res.items
    assert "are within 5 points of each other" in race_sentence(pairs, margin=0.05, tie="pairs")


def test_a_tie_or_winner_names_a_cell_margin_worse_than_the_best_at_most_alpha_of_the_time():
    """The claim's worst case: cell b is exactly `margin` below a on the pool. Naming b (a tie led by b,
    or b the winner) is a false claim; it must happen in at most alpha of the races."""
    rng = np.random.default_rng(11)
    reps, alpha, n = 300, 0.1, 400
    wrong = 0
    for r in range(reps):
        a = (rng.random(n) < 0.65).astype(float)
        right, missed = np.flatnonzero(a == 1), np.flatnonzero(a == 0)
        b = a.copy()
        b[rng.choice(right, 30, replace=False)] = 0
        b[rng.choice(missed, 10, replace=False)] = 1                 # a - b = 20 / 400 = margin, 10 % discordant
        res = race(pd.DataFrame({"a": a, "b": b}), seed=r, alpha=alpha, margin=0.05, bounds=False)
        wrong += res.status in ("tie", "winner") and res.best == "b"
    assert wrong / reps <= _mc(alpha, reps)


def test_null_races_rarely_claim_a_difference_and_naive_races_often_do():
    """4 relabelled copies of one cell (the same accuracy on the pool): any elimination is false."""
    rng = np.random.default_rng(7)
    base = (rng.random(200) < 0.55).astype(float)
    reps, alpha = 200, 0.1
    seq = naive = 0
    for r in range(reps):
        table = pd.DataFrame({f"copy{k}": rng.permutation(base) for k in range(4)})
        seq += bool(race(table, seed=r, alpha=alpha, bounds=False).eliminated)
        naive += bool(race(table, seed=r, alpha=alpha, mode="naive").eliminated)
    assert seq / reps <= _mc(alpha, reps)
    assert naive / reps > 2 * alpha


@pytest.mark.parametrize("control", ["all", "best"])
def test_the_best_cell_is_eliminated_at_most_alpha_of_the_time(control):
    rng = np.random.default_rng(9)
    z = rng.random(300)
    cells = {f"c{i}": ((0.5 * z + 0.5 * rng.random(300)) < p).astype(float)
             for i, p in enumerate([0.62, 0.6, 0.58, 0.45])}
    table = pd.DataFrame(cells)
    best = table.mean().idxmax()
    reps, alpha = 200, 0.1
    lost = sum(best in race(table, seed=r, alpha=alpha, control=control, bounds=False).eliminated
               for r in range(reps))
    assert lost / reps <= _mc(alpha, reps)


def test_halving_spends_its_budget_and_halves():
    table = _table([0.85, 0.6, 0.55, 0.5, 0.4, 0.35, 0.3, 0.2], n=400, seed=5)
    res = race(table, seed=2, mode="halving", budget=800)
    assert res.status == "winner" and res.winner == "c0"
    assert res.evaluations <= 800
    live_per_round = res.looks[res.looks.status != "out"].groupby("look").size().tolist()
    assert live_per_round == [8, 4, 2]
    assert res.looks.groupby("look")["items"].first().tolist() == [33, 33 + 66, 33 + 66 + 133]
    with pytest.raises(ValueError, match="budget"):
        race(table, mode="halving")
    with pytest.raises(ValueError, match="less than one item"):
        race(table, mode="halving", budget=10)


def test_two_equal_cells_give_a_winner_at_most_alpha_of_the_time():
    """control="all": a winner among equals is a false claim (each side of the pair at alpha/2)."""
    rng = np.random.default_rng(3)
    base = (rng.random(300) < 0.6).astype(float)
    reps, alpha = 300, 0.1
    wins = sum(race(pd.DataFrame({"a": rng.permutation(base), "b": rng.permutation(base)}), seed=r, alpha=alpha,
                    bounds=False).status == "winner" for r in range(reps))
    assert wins / reps <= _mc(alpha, reps)


@pytest.mark.parametrize("mode", ["sequential", "halving"])
def test_a_race_fed_batch_by_batch_ends_as_the_complete_race(mode):
    table = _table([0.7, 0.65, 0.5, 0.45, 0.3], n=160, seed=6)
    kw = dict(seed=11, mode=mode, budget=500, batch=16)
    full = race(table, **kw)
    partial = pd.DataFrame(np.nan, index=table.index, columns=table.columns)
    calls = 0
    while True:
        res = race(partial, **kw)
        if res.status != "running":
            break
        calls += 1
        assert res.next_items
        for cell in res.remaining:
            partial.loc[list(res.next_items), cell] = table.loc[list(res.next_items), cell]
    pd.testing.assert_frame_equal(res.looks, full.looks)
    assert (res.status, res.winner, res.eliminated) == (full.status, full.winner, full.eliminated)
    assert int(partial.notna().sum().sum()) == full.evaluations and calls == full.looks["look"].max()


def test_an_errored_item_is_not_asked_again_and_is_dropped_from_its_pairs():
    table = _table([0.9, 0.2], n=64, seed=8)
    ran = table.notna()
    table.iloc[:5, 0] = np.nan                  # ran, but errored
    res = race(table, seed=0, ran=ran)
    assert res.status != "running" and res.winner == "c0"


def test_bad_input():
    table = _table([0.5, 0.5], n=20)
    with pytest.raises(ValueError, match="mode"):
        race(table, mode="fast")
    with pytest.raises(ValueError, match="two or more"):
        race(table[["c0"]])
    with pytest.raises(ValueError, match="alpha"):
        race(table, alpha=0.7)
    with pytest.raises(ValueError, match="margin"):
        race(table, margin=5)
    with pytest.raises(ValueError, match="tie rule"):
        race(table, tie="nearest")


def test_docstring_examples():
    import doctest

    import harness.stats.race
    import harness.stats.sequences

    for module in (harness.stats.race, harness.stats.sequences):
        assert doctest.testmod(module).failed == 0


def test_bench_race_make_runs_every_folder_on_the_shared_data_with_one_engine(tmp_path, monkeypatch):
    """`python -m bench.race --make` computes each matrix folder with the run's arguments on the shared data
    (it once named a helper that a refactor had removed, and failed before its first run)."""
    import harness.api
    import harness.backends.vllm
    from bench import race as bench_race
    from bench.common import DATA

    calls, engines = [], []

    class Engine:
        def __init__(self, model):
            engines.append(self)
            self.closed = False

        def close(self):
            self.closed = True

    def fake_run(tasks, strategies, **kw):
        calls.append((tasks, strategies, kw))

    monkeypatch.setattr(harness.backends.vllm, "VLLMBackend", Engine)
    monkeypatch.setattr(harness.api, "run", fake_run)
    bench_race.make_here(tmp_path, ["piqa"])
    assert len(engines) == 1 and engines[0].closed
    [(tasks, strategies, kw)] = calls
    assert tasks == ["piqa"] and "few_shot:k={1,3,5}" in strategies
    assert kw["data_dir"] == DATA and kw["limit"] == bench_race.LIMIT and kw["out"] == tmp_path / "piqa"


def test_bench_race_pool_resamples_whole_rows():
    """`python -m bench.race --pool N`: N items drawn with replacement from the matrix's rows, each row one
    item's answers by every cell (so the cells' agreement, which the paired race depends on, is kept)."""
    from bench.race import resample

    table = _table([0.7, 0.6, 0.4], n=50, seed=8).assign(row=np.arange(50.0))   # `row` tells whose answers
    pool = resample(table, 400, seed=1)
    assert pool.shape == (400, 4) and pool.index.is_unique and list(pool.columns) == list(table.columns)
    source = table.iloc[pool["row"].astype(int)]
    assert (source.to_numpy() == pool.to_numpy()).all()                           # whole rows, never mixed
    assert (pool.mean() - table.mean()).drop("row").abs().max() < 0.1
    assert resample(table, 400, seed=1).equals(pool) and not resample(table, 400, seed=2).equals(pool)
