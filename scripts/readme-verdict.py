"""Rewrite the quoted verdict of the default suite in README.md (between the two marker lines).

    python scripts/readme-verdict.py RUN_DIR      # quote a finished run of the default suite
    python scripts/readme-verdict.py              # run the default suite first (starts the engine)
    python scripts/readme-verdict.py --check RUN_DIR   # exit 1 if README.md is not what RUN_DIR gives

Run it whenever harness/runs/defaults.py, a default-suite task, template or the scoring changes. It refuses a
run folder that is not a complete run of the current default suite at the default size.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- default-suite-verdict:start (scripts/readme-verdict.py writes this block) -->"
END = "<!-- default-suite-verdict:end -->"


def quote(run_dir: Path) -> str:
    """The block: the report's verdict lines and an accuracy table, from the run folder's own files."""
    from harness.runs.defaults import DEFAULT_LIMIT, DEFAULT_SUITE
    from harness.errors import ConfigError
    from harness.reports.paired import pairs_table
    from harness.reports.verdicts import verdicts
    from harness.reports.report_format import pct
    from harness.runs.results import load_run
    from harness.reports.stats import summarize

    data = load_run(run_dir)
    run, preds = data["run"], data["predictions"]
    cfg = run.get("config") or {}
    ran = {t: list(ss) for t, ss in (cfg.get("suite") or {}).items()}
    if run.get("status") != "complete" or ran != {t: list(ss) for t, ss in DEFAULT_SUITE.items()} \
            or cfg.get("limit") != DEFAULT_LIMIT:
        raise ConfigError("not a complete run of the current default suite", where=str(run_dir), field="run.json",
                          fix="run `harness run` with no arguments and pass its run folder")
    summary = summarize(preds)
    lines = [f"From `harness run` (run `{run.get('run_id')}`, {cfg.get('model')}, {DEFAULT_LIMIT} items per task, "
             f"{int(preds['prompt_tokens'].sum()):,} prompt and {int(preds['completion_tokens'].sum()):,} "
             "generated tokens), verdict section of `report.md`:", ""]
    lines += [f"> - {v['text']}" for v in verdicts(summary, pairs_table(preds))]
    strategies = list(dict.fromkeys(s for ss in DEFAULT_SUITE.values() for s in ss))
    acc = {(r["task"], r["strategy"]): r["accuracy"] for r in summary.to_dict("records")}
    lines += ["", "| accuracy | " + " | ".join(f"`{s}`" for s in strategies) + " |",
              "|---|" + "---|" * len(strategies)]
    for task, ss in DEFAULT_SUITE.items():
        cells = [pct(acc[(task, s)], 0) if (task, s) in acc else "" for s in strategies]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    majk = run_dir / "majk.csv"
    if majk.exists():
        import pandas as pd

        m = pd.read_csv(majk)
        for (task, strat), g in m.groupby(["task", "strategy"]):
            curve = ", ".join(f"{int(k)}: {pct(v, 0)}" for k, v in zip(g["k"], g["maj_at_k"]))
            lines += ["", f"maj@k of {strat} on {task} (k: accuracy): {curve}."]
    return "\n".join(lines)


def rewrite(readme: Path, block: str) -> str:
    text = readme.read_text(encoding="utf-8")
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        from harness.errors import ConfigError
        raise ConfigError("the verdict markers are missing or repeated", where=str(readme), field=START,
                          fix=f"put one line {START} and one line {END} where the quote goes")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    from harness.errors import HarnessError

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", help="a finished run of the default suite (default: run it now)")
    p.add_argument("--readme", default=str(ROOT / "README.md"))
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when README.md differs")
    a = p.parse_args(argv)
    try:
        if a.run_dir is None:
            import harness
            from harness.runs.defaults import DEFAULT_LIMIT

            run_dir = Path(harness.run(limit=DEFAULT_LIMIT, progress=False).attrs["run_dir"])
        else:
            run_dir = Path(a.run_dir)
        readme = Path(a.readme)
        new = rewrite(readme, quote(run_dir))
    except HarnessError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    if a.check:
        same = new == readme.read_text(encoding="utf-8")
        print("README.md quotes this run" if same else "README.md does not quote this run", file=sys.stderr)
        return 0 if same else 1
    readme.write_text(new, encoding="utf-8")
    print(f"{readme}: verdict of {run_dir} quoted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
