"""Run folder(s) -> report.html (self-contained: plots as base64 PNG, no scripts, no external URLs),
report.md, pairs.csv and decisions.csv (each cell against the best at the margin; harness/reports/decisions.py).

    write_report("results/20250101-120000-000")            # one run, written into its folder
    write_compare(["results/a", "results/b"], out="cmp")   # several runs in one report

Model output and dataset text are untrusted: the HTML (templates/report.html.j2) is rendered by Jinja
with autoescape on, and a Content-Security-Policy forbids scripts and any resource that is not an
inline data: image. Number formatting is in report_format.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from .paired import pairs_table
from .report_format import MEASURES_NOTE, _col, _missing, _num, _relabel, fnum, fp, md_table, md_text, pct
from ..runs.results import (PREDICTION_COLUMNS, RESULTS_DIR, load_run, new_run_id, write_frame_atomic,
                            write_json_atomic, write_text_atomic)
from ..stats.decisions import DEFAULT_MARGIN
from .decisions import constant_cells, resolve_margin
from .judging import judge_sections
from .race_report import race_decisions, race_sections, with_race
from .verdicts import HOLM_TEXT, family_verdicts, verdicts
from .summary_table import summary_layout, summary_table, wbr
from .stats import summarize

ALPHA = 0.05
MAX_EXAMPLES = 5
MAX_TEXT = 4000

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
HTML_TEMPLATE = "report.html.j2"  # in TEMPLATES_DIR; Jinja with autoescape on


@dataclass
class Bundle:
    """Everything a report is built from (one run, or several runs joined)."""

    title: str
    preds: pd.DataFrame
    summary: pd.DataFrame
    majk: pd.DataFrame
    runs: list[dict] = field(default_factory=list)
    probes: pd.DataFrame = field(default_factory=pd.DataFrame)
    family: str = "all"  # the Holm family (paired.FAMILIES)
    holm_key: str = "all"  # which sentence describes it (HOLM_TEXT)
    margin: float = DEFAULT_MARGIN  # the non-inferiority margin of the decisions (accuracy, 0.05 = 5 points)
    race: dict = field(default_factory=dict)  # a raced run's {task: decision sentence} (race_report.py)


@dataclass(frozen=True)
class Section:
    """An extra report section: a table (header, formatted rows) built from the Bundle, shown in
    report.html and report.md after the built-in sections. See docs/extending.md."""

    id: str
    title: str
    table: Callable[[Bundle], tuple[list[str], list[list[str]]]]
    note: str = ""


SECTIONS: list[Section] = []  # extra sections in every report (write_report's `sections=` overrides it)


# -- summary table: harness/reports/summary_table.py -----------------------------------------
def pairs_rows(pairs: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    head = ["task", "model", "strategy A", "strategy B", "n", "acc A", "acc B", "A − B [interval]", "level",
            "p (score test)", "p Holm", "significance"]
    rows = [[r["task"], r["model"], r["strategy_a"], r["strategy_b"], str(r["n"]), pct(r["acc_a"]), pct(r["acc_b"]),
             f"{pct(r['diff'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]", pct(r.get("level"), 2),
             fp(r["p_mcnemar"]), fp(r["p_holm"]),
             "significant" if _num(r["p_holm"]) < ALPHA else "not significant"] for r in pairs.to_dict("records")]
    return head, rows


def _clip(text: Any) -> str:
    t = "" if _missing(text) else str(text)
    return t if len(t) <= MAX_TEXT else t[:MAX_TEXT] + f"\n… [{len(t) - MAX_TEXT} more characters]"


def _messages(prompt: Any) -> list[dict]:
    if _missing(prompt):
        return []
    try:
        msgs = json.loads(prompt)
        return [{"role": str(m.get("role", "?")), "content": _clip(m.get("content", ""))} for m in msgs]
    except (json.JSONDecodeError, TypeError, AttributeError):
        return [{"role": "?", "content": _clip(prompt)}]


def example_groups(preds: pd.DataFrame, *, limit: int = MAX_EXAMPLES) -> list[dict]:
    """Up to `limit` wrong answers, parse failures and errors per task x model x strategy."""
    if preds.empty:
        return []
    err = preds["error"].notna() & (preds["error"].astype(str) != "")
    parse_ok = preds["parse_ok"].fillna(False).astype(bool)
    correct = preds["correct"].fillna(False).astype(bool)
    kinds = {"wrong answers": ~err & parse_ok & ~correct, "parse failures": ~err & ~parse_ok,
             "errors": err}
    groups = []
    for (task, model, strat), g in preds.groupby(["task", "model", "strategy"], sort=True):
        sections = []
        for kind, mask in kinds.items():
            rows = g[mask.loc[g.index]]
            items = [{"id": str(r.get("example_id")), "gold": _clip(r.get("gold")), "answer": _clip(r.get("answer")),
                      "output": _clip(r.get("output")), "error": _clip(r.get("error")),
                      "messages": _messages(r.get("prompt"))} for r in rows.head(limit).to_dict("records")]
            sections.append({"kind": kind, "total": len(rows), "items": items})
        groups.append({"task": task, "model": model, "strategy": strat, "n": len(g), "sections": sections})
    return groups


MODEL_KEYS = [("attention", "attention layout"), ("num_hidden_layers", "layers"),
              ("num_attention_heads", "attention heads"), ("num_key_value_heads", "KV heads"),
              ("head_dim", "head dim"), ("hidden_size", "hidden size"), ("dtype", "dtype"),
              ("kv_cache_bytes_per_token", "KV cache bytes / token"),
              ("kv_cache_bytes_per_token_mha", "KV cache bytes / token if MHA"),
              ("total_params", "parameters"), ("active_params", "active parameters"),
              ("num_experts", "experts"), ("architecture", "architecture")]


def _val(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10_000:
        return f"{v:,}"
    return str(v)


def runs_side_by_side(runs: list[dict], preds: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """One row per run: wall time, throughput, latency, prefix-cache hit rate, and differing settings."""
    settings = [{k: _val(v) for k, v in (r.get("engine") or {}).items()} for r in runs]
    keys = sorted({k for st in settings for k in st})
    differing = [k for k in keys if len({st.get(k) for st in settings}) > 1]
    head = ["run", "rows", "cached rows", "wall (s)", "completion tok/s", "time in batch p50 (s)",
            "time in batch p95 (s)", "prefix-cache hit rate"] + differing
    rows = []
    for r, st in zip(runs, settings):
        rid = str(r.get("run_id", ""))
        g = preds[preds["run_id"].astype(str) == rid] if "run_id" in preds else preds
        cached = g["cached"].fillna(False).astype(bool) if "cached" in g else pd.Series(False, index=g.index)
        fresh = g[~cached]  # rows answered from the request cache took no engine time in this run
        wall = r.get("wall_s")
        ctoks = _col(fresh, "completion_tokens").sum()
        lat = _col(fresh, "batch_latency_s").dropna()
        es = r.get("engine_stats") or {}
        hit = (es.get("prefix_cache_hits", 0) / es["prefix_cache_queries"]) if es.get("prefix_cache_queries") else None
        rows.append([rid, str(len(g)), str(int(cached.sum())), fnum(wall, 1) if wall else "–",
                     fnum(ctoks / wall, 1) if wall and len(fresh) else "– (all cached)" if len(g) else "–",
                     fnum(lat.quantile(0.5), 2) if len(lat) else "–", fnum(lat.quantile(0.95), 2) if len(lat) else "–",
                     pct(hit) if hit is not None else "–"] + [st.get(k, "–") for k in differing])
    return head, rows


def run_facts(run: dict) -> dict:
    info = run.get("model_info") or {}
    model = [(label, _val(info[k])) for k, label in MODEL_KEYS if info.get(k) is not None]
    kv, mha = info.get("kv_cache_bytes_per_token"), info.get("kv_cache_bytes_per_token_mha")
    if kv and mha:
        model.append(("KV saving vs MHA", f"{mha / kv:.1f}× smaller"))
    cfg = run.get("config") or {}
    general = [(k, _val(v)) for k, v in [("run id", run.get("run_id")), ("model", cfg.get("model")),
                                         ("backend", run.get("backend")), ("status", run.get("status")),
                                         ("created", run.get("created_at")), ("finished", run.get("finished_at")),
                                         ("wall time (s)", run.get("wall_s")), ("rows", run.get("rows")),
                                         ("limit", cfg.get("limit")), ("seed", cfg.get("seed")),
                                         ("templates", run.get("templates"))] if v is not None]
    return {"run_id": str(run.get("run_id", "")), "general": general, "model": model,
            "engine": [(str(k), _val(v)) for k, v in sorted((run.get("engine") or {}).items())],
            "engine_stats": [(str(k), _val(v)) for k, v in sorted((run.get("engine_stats") or {}).items())],
            "versions": [(str(k), _val(v)) for k, v in sorted((run.get("versions") or {}).items())]}


def build_context(b: Bundle, sections: Sequence[Section] = ()) -> dict:
    from .matrix import matrix_context
    from .forest import forest_plot  # decisions.csv as a figure, first
    from .plots import all_plots

    from .decisions import decision_table, decisions_rows

    pairs = pairs_table(b.preds, family=b.family)
    decisions = decision_table(b.summary, pairs, margin=b.margin)
    head, rows = summary_table(b.summary)
    layout = summary_layout(b.summary)
    phead, prows = pairs_rows(pairs)
    dhead, drows = decisions_rows(decisions)
    rhead, rrows = runs_side_by_side(b.runs, b.preds)
    return {"runs_head": rhead, "runs_rows": rrows,"title": b.title, "generated": datetime.now().isoformat(timespec="seconds"),
            "summary_head": head, "summary_rows": rows,
            "summary_groups": layout["groups"], "summary_extra": layout["extra"],
            "summary_names": layout["names"], "pairs_head": phead, "pairs_rows": prows,
            "decisions_head": dhead, "decisions_rows": drows, "decisions": decisions, "margin": b.margin,
            "verdicts": with_race(b.race, verdicts(b.summary, pairs, decisions) + family_verdicts(pairs)),
            "plots": forest_plot(decisions) + all_plots(b.summary, b.preds, b.majk, b.probes), "measures_note": MEASURES_NOTE,
            "examples": example_groups(b.preds), "runs": [run_facts(r) for r in b.runs], "pairs": pairs,
            "alpha": ALPHA, "holm_text": HOLM_TEXT[b.holm_key],
            "no_pairs_text": ("No strategy ran in more than one run: no same-strategy pairs (harness compare "
                              "--all-pairs compares different strategies)." if b.family == "same_strategy"
                              else "Only one strategy per task: no pairs."),
            "sections": [_section(sec, b) for sec in _builtin_sections(b) + list(sections)],
            "matrix": matrix_context(b.preds, b.summary)}  # templates x strategies x models (harness/reports/matrix.py)


def _section(sec: Section, b: Bundle) -> dict:
    head, rows = sec.table(b)
    return {"id": sec.id, "title": sec.title, "note": sec.note, "head": head, "rows": rows}


def _builtin_sections(b: Bundle) -> list[Section]:
    """Sections shown only when they have rows: the variance split, the judge's quality, pairwise preferences."""
    from .variance import NOTE, variance_rows, variance_table

    head, rows = variance_rows(variance_table(b.preds))
    return ([Section("variance", "Variance by source", lambda _b: (head, rows), NOTE)] if rows else []) + [
        Section(*x) for x in judge_sections(b)]  # judged tasks (docs/judge.md)


def render_md(ctx: dict) -> str:
    parts = [f"# {md_text(ctx['title'])}", "", f"Generated {ctx['generated']}. Plots and examples are in "
             "report.html.", "", "## Verdict", ""]
    parts += [f"- {md_text(v['text'])}" for v in ctx["verdicts"]] or ["No accuracy to compare."]
    if ctx.get("decisions_rows"):
        parts += ["", f"Decisions (decisions.csv): each cell against the best cell of its task and model, margin "
                  f"{pct(ctx['margin'], 0)}; the interval is at the stated level (Bonferroni over the task's pairs, "
                  f"cut at 0 where Holm rejects). docs/statistics.md defines every column.", "",
                  md_table(ctx["decisions_head"], ctx["decisions_rows"])]
    parts += ["", "## Summary", "", md_text(ctx["measures_note"]), "",
              md_table(ctx["summary_head"], ctx["summary_rows"]), "",
              "## Paired significance", "", f"Score test (McNemar without continuity correction) on items both "
              f"strategies answered without an error, and Tango's score interval at the stated level (Bonferroni "
              f"over the family, cut at 0 where Holm rejects, so it excludes 0 exactly when p Holm < {ctx['alpha']}). "
              f"{ctx['holm_text']} Significant at p < {ctx['alpha']}.", ""]
    parts += [md_table(ctx["pairs_head"], ctx["pairs_rows"]) if ctx["pairs_rows"] else ctx["no_pairs_text"], ""]
    from .matrix import matrix_markdown
    parts += matrix_markdown(ctx.get("matrix"))
    for sec in ctx.get("sections", ()):
        parts += [f"## {md_text(sec['title'])}", "", *([md_text(sec["note"]), ""] if sec["note"] else []),
                  md_table(sec["head"], sec["rows"]), ""]
    parts += ["## Runs side by side", "", md_table(ctx["runs_head"], ctx["runs_rows"]), ""]
    for r in ctx["runs"]:
        parts += [f"## Model and engine: {md_text(r['run_id'])}", ""]
        for name in ("general", "model", "engine", "engine_stats"):
            if r[name]:
                parts += [f"**{name.replace('_', ' ')}**", "", md_table(["key", "value"], [list(x) for x in r[name]]), ""]
    return "\n".join(parts) + "\n"


def render_html(ctx: dict) -> str:
    """templates/report.html.j2 with autoescape on: model output and dataset text stay plain text."""
    from jinja2 import Environment, FileSystemLoader

    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["wbr"] = wbr
    return env.get_template(HTML_TEMPLATE).render(**ctx)



def _write(b: Bundle, out: Path, sections: Sequence[Section] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    ctx = build_context(b, SECTIONS if sections is None else sections)
    paths = [out / "report.html", out / "report.md", out / "pairs.csv", out / "decisions.csv"]
    write_text_atomic(paths[0], render_html(ctx))
    write_text_atomic(paths[1], render_md(ctx))
    write_frame_atomic(ctx["pairs"], paths[2])
    write_frame_atomic(ctx["decisions"], paths[3])
    return paths


def _complete(preds: pd.DataFrame) -> pd.DataFrame:
    """Add any missing prediction column (a run from an older version) as empty."""
    missing = [c for c in PREDICTION_COLUMNS if c not in preds.columns]
    return preds.assign(**{c: None for c in missing}) if missing else preds


def _majk(d: Path) -> pd.DataFrame:
    p = d / "majk.csv"
    return pd.read_csv(p) if p.exists() else pd.DataFrame()


def write_report(run_dir: str | Path, *, sections: Sequence[Section] | None = None,
                 margin: float | None = None) -> list[Path]:
    """Write report.html, report.md, pairs.csv and decisions.csv into a run folder; returns their paths.
    `sections`: extra sections (default: SECTIONS). `margin`: the non-inferiority margin (default: the
    one run.json records, else 0.05); it is recorded in run.json."""
    data = load_run(run_dir)
    d = Path(run_dir)
    preds = _complete(data["predictions"])
    summary = data["summary"] if not data["summary"].empty else summarize(preds, data["probes"])
    if "constant_answer" not in summary and not preds.empty:  # a run folder from before issue 22
        summary = summary.merge(constant_cells(preds), on=["task", "strategy", "model"], how="left")
    run = data["run"]
    m = resolve_margin(margin, run)
    if run.get("margin") != m:
        write_json_atomic(d / "run.json", {**run, "margin": m})
    title = f"Run {run.get('run_id', d.name)} — {(run.get('config') or {}).get('model', '')}".rstrip(" —")
    sections = list(SECTIONS if sections is None else sections) + [Section(*s) for s in race_sections(d)]  # --race
    return _write(Bundle(title, preds, summary, _majk(d), [run], data["probes"], margin=m, race=race_decisions(d)), d,
                  sections)


def write_compare(run_dirs: Sequence[str | Path], out: str | Path | None = None, *,
                  sections: Sequence[Section] | None = None, all_pairs: bool = False,
                  margin: float | None = None) -> list[Path]:
    """Join several run folders into one report (default folder results/compare-<timestamp>).

    Significance tests and Holm's correction cover the comparisons asked for: by default the same
    strategy across runs (cot@a vs cot@b), per task; with all_pairs, every pair of strategies and runs.
    The folder also gets the joined summary.csv (harness compare prints its verdicts from it and pairs.csv)."""
    datas = [load_run(d) for d in run_dirs]
    ids = [str(x["run"].get("run_id") or Path(x["dir"]).name) for x in datas]
    ids = [rid if ids.count(rid) == 1 else f"{rid}#{i}" for i, rid in enumerate(ids)]
    preds = _complete(pd.concat(_relabel([_complete(x["predictions"]) for x in datas], ids), ignore_index=True))
    majk = pd.concat(_relabel([_majk(Path(x["dir"])) for x in datas], ids), ignore_index=True)
    probes = pd.concat(_relabel([x["probes"] for x in datas], ids, like=[x["predictions"] for x in datas]),
                       ignore_index=True)
    if out is None:
        out = RESULTS_DIR / new_run_id("compare-")
    from .decisions import shared_items

    preds, shared = shared_items(preds, ids)
    title = f"Comparison of {len(datas)} runs: {', '.join(ids)}" + (f" (on the items every run has: {shared})"
                                                                    if shared else "")
    family, key = ("all", "all_runs") if all_pairs else ("same_strategy", "same_strategy")
    summary = summarize(preds, probes)
    Path(out).mkdir(parents=True, exist_ok=True)
    write_frame_atomic(summary, Path(out) / "summary.csv")  # before pairs.csv: reports/summary.py folder_verdicts
    return _write(Bundle(title, preds, summary, majk, [x["run"] for x in datas], probes, family=family,
                         holm_key=key, margin=resolve_margin(margin, {})), Path(out), sections)
