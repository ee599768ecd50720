"""The results store: a run folder with a crash-safe journal, built into parquet and CSV files.

results/<run_id>/
  run.json              config, model info, engine settings, seeds, versions, resumes
  journal.jsonl         one line per completed unit {"p": prediction row, "s": [sample rows],
                        "u": the unit's identity (harness.runs.identity)}, appended a chunk at a time,
                        flushed and fsynced
  predictions.parquet   one row per task x strategy x model x example   (built from the journal)
  samples.parquet       one row per generated sample (self-consistency)  (built from the journal)
  summary.csv           one row per task x strategy x model
  probe.jsonl           the latency probe's rows (flagged probe = true; never scored), appended per call
  probes.parquet        the same, built from probe.jsonl (docs/measures.md)
  majk.csv              maj@k for every k when self-consistency ran

A torn line (a crash mid-write) is ignored on read, so a journal is always readable; a line that is
valid JSON but not a unit is refused (ConfigError naming the line).
The run-folder rules live here: where runs go (RESULTS_DIR), the run id format (`new_run_id`), what may
be used as a run folder (`check_run_folder`), and atomic writes (a temporary file renamed over the
target) for every file but the journal.
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..errors import ConfigError
from ..scoring.scorers import row_columns

PREDICTION_COLUMNS = [
    "run_id", "task", "strategy", "model", "example_id", "template", "template_hash", "backend",
    "answer_mode", "format", "guided", "prompt_tokens", "completion_tokens", "cached_prompt_tokens",
    "batch_latency_s", "batch_ttft_s", "batch_itl_s", "engine_s_share",
    "finish_reason", "output", "answer", "gold", "correct", "answer_norm", "correct_norm", "parse_ok", "error", "cached",
    "n_samples", "votes", "agreement", "tie_rule", "json_valid", "schema_valid", "field_em", "field_f1",
    "cost_usd", "flops", "decoding", "prompt", "unit_id",
]
PREDICTION_COLUMNS += [c for c in row_columns() if c not in PREDICTION_COLUMNS]  # the scorer table's columns
SAMPLE_COLUMNS = ["run_id", "task", "strategy", "model", "example_id", "sample_idx", "output", "answer",
                  "parse_ok", "completion_tokens", "cumulative_logprob", "finish_reason"]
PROBE_COLUMNS = [
    "run_id", "task", "strategy", "model", "example_id", "probe", "probe_concurrency", "wave", "prompt_tokens",
    "completion_tokens", "cached_prompt_tokens", "latency_s", "ttft_s", "tpot_s", "wall_s", "finish_reason",
    "error",
]
# Columns renamed by issue 14: request times measured inside a batch are not latencies (docs/measures.md).
RENAMED_PREDICTION_COLUMNS = {"latency_s": "batch_latency_s", "ttft_s": "batch_ttft_s", "itl_s": "batch_itl_s"}
RENAMED_SUMMARY_COLUMNS = {"mean_latency_s": "batch_latency_mean_s", "latency_p50_s": "batch_latency_p50_s",
                           "latency_p95_s": "batch_latency_p95_s", "ttft_p50_s": "batch_ttft_p50_s",
                           "ttft_p95_s": "batch_ttft_p95_s"}
KEY = ["task", "strategy", "model", "example_id"]
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
RESULTS_DIR = Path("results")  # relative to the working directory, as `harness run` prints it


def new_run_id(prefix: str = "") -> str:
    """A new run id from the local time, to the millisecond: '20250101-120000-123' (`prefix` first)."""
    return prefix + datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]


def run_folder(out: str | Path | None, run_id: str | None) -> Path:
    """The run folder: `out`, else RESULTS_DIR/<run_id or a new id> (a given run id is checked)."""
    if run_id is not None:
        check_run_id(run_id)
    run_dir = Path(out) if out else RESULTS_DIR / (run_id or new_run_id())
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError("output path exists and is not a folder", where=str(run_dir), field="--out",
                          fix="give a folder path")
    return run_dir


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id) or ".." in run_id:
        raise ConfigError(f"run id '{run_id}' is not allowed", where=run_id, field="--run-id",
                          fix="use letters, digits, '_', '-' and '.' (no '/' or '..')")
    return run_id


_unit_key = itemgetter(*KEY)


def unit_key(row: dict) -> tuple:
    return _unit_key(row)


def entry_id(entry: dict) -> Any:
    """What a journal entry is: its content-addressed unit id (harness.runs.identity), or, for a journal
    written before units had one, its (task, strategy, model, example_id)."""
    u = entry.get("u")
    return u["id"] if u else _unit_key(entry["p"])


def _is_unit(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("p"), dict) and all(k in entry["p"] for k in KEY)
            and isinstance(entry.get("s", []), list)
            and (entry.get("u") is None or isinstance(entry["u"], dict) and "id" in entry["u"]))


class Journal:
    """Append-only JSON-lines journal of completed units."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        entries: dict[Any, dict] = {}
        with self.path.open("rb") as f:
            for no, raw in enumerate(f, 1):
                try:
                    entry = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # torn write at the end of a killed run
                if not _is_unit(entry):
                    raise ConfigError(f"line {no} is not a unit of a run", where=str(self.path), field="journal",
                                      fix="remove that line, or use a new --out")
                entries[entry_id(entry)] = entry  # a later line (a retried error) replaces an earlier
        return list(entries.values())

    def append(self, entries: Iterable[dict]) -> None:
        data = "".join(_encode(e) + "\n" for e in entries)
        if not data:
            return
        self._heal_torn_tail()
        with self.path.open("a", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def _heal_torn_tail(self) -> None:
        """If a crash left a partial last line, end it so the next entry starts on its own line."""
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open("rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")


def _json_default(o: Any):
    if hasattr(o, "item"):
        return o.item()
    return str(o)


_encode = json.JSONEncoder(default=_json_default, ensure_ascii=False).encode  # one encoder, not one per line


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path` (readers never see half)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default, ensure_ascii=False))


def write_frame_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        df.to_parquet(tmp, index=False)
    else:
        df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def frames_from_journal(entries: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    preds = pd.DataFrame([e["p"] for e in entries])
    for col in PREDICTION_COLUMNS:
        if col not in preds.columns:
            preds[col] = None
    samples = pd.DataFrame([s for e in entries for s in e.get("s", [])], columns=SAMPLE_COLUMNS)
    if len(preds):
        preds = preds.sort_values(KEY, kind="stable").reset_index(drop=True)
    if len(samples):
        samples = samples.sort_values(KEY + ["sample_idx"], kind="stable").reset_index(drop=True)
    extra = [c for c in preds.columns if c not in PREDICTION_COLUMNS]
    return preds[PREDICTION_COLUMNS + extra], samples


def upgrade_columns(df: pd.DataFrame, renamed: dict[str, str]) -> pd.DataFrame:
    """A frame written before a column was renamed, with the new names (old run folders stay readable)."""
    old = {k: v for k, v in renamed.items() if k in df.columns and v not in df.columns}
    return df.rename(columns=old) if old else df


def probes_from_journal(path: Path) -> pd.DataFrame:
    rows = [e["p"] for e in Journal(path).read()] if path.exists() else []
    df = pd.DataFrame(rows, columns=PROBE_COLUMNS if not rows else None)
    for col in PROBE_COLUMNS:
        if col not in df.columns:
            df[col] = None
    if len(df):
        df = df.sort_values(KEY, kind="stable").reset_index(drop=True)
    return df


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read a run folder back: {'run': run.json, 'predictions': df, 'samples': df, 'summary': df,
    'probes': df}. Frames of older runs get today's column names."""
    d = Path(run_dir)
    if not (d / "run.json").is_file():
        raise ConfigError("not a run folder (no run.json)", where=str(d), fix="pass a folder written by harness run")
    out: dict[str, Any] = {"run": json.loads((d / "run.json").read_text(encoding="utf-8")), "dir": d}
    for name in ("predictions", "samples"):
        p = d / f"{name}.parquet"
        out[name] = pd.read_parquet(p) if p.exists() else pd.DataFrame()
    if out["predictions"].empty and (d / "journal.jsonl").exists():
        out["predictions"], out["samples"] = frames_from_journal(Journal(d / "journal.jsonl").read())
    out["predictions"] = upgrade_columns(out["predictions"], RENAMED_PREDICTION_COLUMNS)
    s = d / "summary.csv"
    out["summary"] = upgrade_columns(pd.read_csv(s) if s.exists() else pd.DataFrame(), RENAMED_SUMMARY_COLUMNS)
    p = d / "probes.parquet"
    out["probes"] = pd.read_parquet(p) if p.exists() else probes_from_journal(d / "probe.jsonl")
    return out


def check_run_folder(run_dir: Path) -> dict:
    """Refuse an output path that cannot hold a run: a file, a folder that is not a run (it would be
    overwritten), a run.json that is not a run record, a place that cannot be written. Returns the old
    run.json ({} for a new folder)."""
    where, fix_new = str(run_dir), "give a new folder, or one written by harness run"
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError("output path exists and is not a folder", where=where, field="--out", fix="give a folder path")
    if run_dir.is_dir():
        meta_path = run_dir / "run.json"
        if not meta_path.exists():
            if (run_dir / "journal.jsonl").exists():  # killed before run.json was written
                return {}
            if any(run_dir.iterdir()):
                raise ConfigError("folder exists and is not a run (no run.json): its files would be overwritten",
                                  where=where, field="--out", fix=fix_new)
        else:
            try:
                old = json.loads(meta_path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
                raise ConfigError(f"run.json is unreadable: {exc}", where=str(meta_path), field="--out",
                                  fix=fix_new) from None
            if not isinstance(old, dict) or not isinstance(old.get("config"), dict):
                raise ConfigError(f"run.json is not a run record (a JSON {type(old).__name__})",
                                  where=str(meta_path), field="--out", fix=fix_new)
            if not os.access(run_dir, os.W_OK | os.X_OK):
                raise ConfigError("the run folder is not writable", where=where, field="--out", fix=fix_new)
            return old
    parent = run_dir.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK) or _pseudo_fs(parent):
        raise ConfigError(f"cannot create a folder under '{parent}'", where=where, field="--out",
                          fix="give a writable location, e.g. results/NAME")
    return {}


def _pseudo_fs(path: Path) -> bool:
    """True under /proc, /sys and /dev: writable-looking kernel file systems."""
    top = path.resolve().parts[1:2]
    return bool(top) and top[0] in ("proc", "sys", "dev")
