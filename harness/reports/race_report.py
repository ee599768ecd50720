"""The report's race section (a raced run: race.csv and race.json in its folder): per task the
decision sentence and each cell's last look, and race.png, the sequences' bounds over items.

>>> race_sections(Path("no-such-folder"))
[]
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

NOTE = ("The race (docs/race.md) compares each live cell with the leader after every batch, on the items both "
        "answered, with an anytime-valid confidence sequence for the difference in accuracy; a cell stops when its "
        "sequence lies below 0; a tie says no remaining cell is the margin or more better than the leader. Every "
        "elimination, winner and tie claim is right, all at once, with probability at "
        "least 95 % (control 'all'). Bounds: cell − leader at the cell's last look, in accuracy points. "
        "race.png plots the bounds over items.")


FIXED_N = "Fixed-n reading, approximate after the race's stop (the race decides): "


def race_decisions(run_dir: Path) -> dict[str, str]:
    """{task: the race's decision sentence} of a raced run folder ({} for any other folder)."""
    meta = Path(run_dir) / "race.json"
    if not meta.is_file():
        return {}
    tasks = json.loads(meta.read_text(encoding="utf-8")).get("tasks", {})
    return {task: d["sentence"] for task, d in tasks.items() if d.get("sentence")}


def with_race(race: dict[str, str], verdicts: list[dict]) -> list[dict]:
    """A raced run's verdicts: the race's sentence per task first, the decision (its error rate holds at
    every look), then the ordinary verdicts, marked: their tests take the items as fixed in advance, which
    a race that stopped when its sequences decided does not (docs/race.md)."""
    if not race:
        return verdicts
    return ([{"text": f"race on {task}: {sentence}"} for task, sentence in race.items()]
            + [{**v, "text": FIXED_N + v["text"]} for v in verdicts])


def _fmt(x) -> str:
    return "" if pd.isna(x) else f"{100 * float(x):+.1f}"


def race_rows(looks: pd.DataFrame, sentences: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    head = ["task", "cell", "items", "accuracy", "lower", "upper", "status", "decision"]
    rows = []
    for task, part in looks.groupby("task", sort=False):
        last = part[part["status"] != "out"].groupby("cell", sort=False).tail(1)
        sentence = sentences.get(task, "")
        for i, (_, r) in enumerate(last.iterrows()):
            status = "leader" if r["leader"] and r["status"] == "live" else r["status"]
            rows.append([task, str(r["cell"]), str(int(r["items"])), f"{100 * r['accuracy']:.1f} %", _fmt(r["lower"]),
                         _fmt(r["upper"]), status, sentence if i == 0 else ""])
    return head, rows


def race_plot(looks: pd.DataFrame, path: Path) -> Path:
    """One panel per task: each non-leader cell's bounds (cell − leader) over items, 0 and the end."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(looks["task"]))
    fig = Figure(figsize=(7, 3.2 * len(tasks)))
    FigureCanvasAgg(fig)
    for k, task in enumerate(tasks):
        ax = fig.add_subplot(len(tasks), 1, k + 1)
        part = looks[(looks["task"] == task) & looks["lower"].notna()]
        for cell, g in part.groupby("cell", sort=False):
            line, = ax.plot(g["items"], 100 * g["upper"], label=str(cell))
            ax.plot(g["items"], 100 * g["lower"], color=line.get_color(), linestyle="--")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"{task}: cell − leader, confidence sequence (upper solid, lower dashed)", fontsize=9)
        ax.set_xlabel("items per cell")
        ax.set_ylabel("accuracy points")
        ax.set_ylim(-60, 30)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def race_sections(run_dir: Path) -> list[tuple]:
    """The race section of a raced run as (id, title, table, note), the fields of report.Section
    (none for an ordinary run)."""
    csv = Path(run_dir) / "race.csv"
    if not csv.is_file():
        return []
    looks = pd.read_csv(csv)
    race_plot(looks, Path(run_dir) / "race.png")
    head, rows = race_rows(looks, race_decisions(run_dir))
    return [("race", "Race", lambda _b: (head, rows), NOTE)]
