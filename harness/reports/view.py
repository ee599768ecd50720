"""`harness view [RESULTS_DIR]`: a read-only local results browser (standard library http.server).

    harness view results/                 # http://127.0.0.1:PORT/ : every run folder, filterable
    harness view results/ --host 0.0.0.0 --allow-remote   # other binds only with the explicit flag

Pages: `/` lists the run folders under RESULTS_DIR (filter by task, model, template hash; tick two or
more and compare); `/compare?run=A&run=B` puts the runs side by side on the items they share, with the
paired statistics of harness/reports/matrix.py (exact McNemar, paired bootstrap CI, Holm over the task's cell
pairs); `/runs/RUN/FILE` serves a file of a run folder (report.html, report.md, CSVs, run.json).

It never writes: it opens files for reading only. Every path from a URL is resolved and must stay inside
RESULTS_DIR (a `..` segment, an encoded `%2e%2e`, an absolute path, a link out: 404). Pages are rendered
by Jinja with autoescape and served with a Content-Security-Policy that forbids scripts.
"""
from __future__ import annotations

import json
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd

from ..errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'"
SERVED = {".html": "text/html; charset=utf-8", ".md": "text/plain; charset=utf-8", ".csv": "text/plain; charset=utf-8",
          ".json": "application/json; charset=utf-8", ".png": "image/png", ".txt": "text/plain; charset=utf-8"}
MAX_ITEMS = 100  # items shown side by side per task on the compare page
MAX_DEPTH = 3  # run folders are found this many levels below RESULTS_DIR


def check_bind(host: str, allow_remote: bool) -> None:
    """Loopback only, unless the caller says --allow-remote (the page has no login)."""
    if host not in LOOPBACK and not allow_remote:
        raise ConfigError(f"refusing to serve on {host}: the results browser has no login", field="--host",
                          fix="use 127.0.0.1 (default), or add --allow-remote to serve other machines")


def find_runs(root: Path) -> list[Path]:
    """Run folders (a run.json holding a config) under `root`, newest first."""
    out = []

    def walk(d: Path, depth: int) -> None:
        try:
            entries = sorted(d.iterdir())
        except OSError:
            return
        if (d / "run.json").is_file():
            out.append(d)
            return
        if depth < MAX_DEPTH:
            for e in entries:
                if e.is_dir() and not e.is_symlink() and not e.name.startswith("."):
                    walk(e, depth + 1)
    walk(root, 0)
    return sorted(out, key=lambda p: p.stat().st_mtime, reverse=True)


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def run_facts(root: Path, d: Path) -> dict:
    meta = _read_json(d / "run.json")
    cfg = meta.get("config") or {}
    models = [m.get("name") for m in cfg.get("models") or []] or [cfg.get("model")]
    return {"id": d.relative_to(root).as_posix(), "created": str(meta.get("created_at") or ""),
            "status": str(meta.get("status") or ""), "tasks": [str(t) for t in cfg.get("tasks") or []],
            "models": [str(m) for m in models if m], "strategies": [str(s) for s in cfg.get("strategies") or []],
            "templates": {str(k): str(v) for k, v in (meta.get("templates") or {}).items()},
            "rows": meta.get("rows"), "report": (d / "report.html").is_file()}


def _matches(r: dict, task: str, model: str, template: str) -> bool:
    return ((not task or any(task.lower() in t.lower() for t in r["tasks"]))
            and (not model or any(model.lower() in m.lower() for m in r["models"]))
            and (not template or any(h.startswith(template.lower()) or template.lower() in n.lower()
                                     for n, h in r["templates"].items())))


def safe_path(root: Path, url_path: str) -> Path | None:
    """The file under `root` a URL path names, or None: no '..' or absolute segment (also percent-encoded),
    no escape through a link, only regular files."""
    rel = unquote(url_path)
    parts = rel.split("/")
    if "\\" in rel or "\0" in rel or any(p in ("..", ".") or p.startswith("~") for p in parts if p) \
            or rel.startswith("/") or (len(parts[0]) > 1 and parts[0][1] == ":"):
        return None
    p = (root / rel).resolve()
    try:
        p.relative_to(root)
    except ValueError:
        return None
    return p if p.is_file() else None


def compare_context(root: Path, ids: list[str]) -> dict:
    """Runs side by side: a summary per (run, task, strategy, model), the paired tests between every two
    cells of a task on the items both answered, and per task the first items' answers next to each other."""
    from .matrix import cell_pairs
    from .report_format import fp, pct
    from ..runs.results import load_run
    from .stats import summarize

    frames, runs = [], []
    for rid in ids:
        d = safe_path(root, f"{rid}/run.json")
        if d is None:
            raise FileNotFoundError(rid)
        data = load_run(d.parent)
        preds = data["predictions"].copy()
        if not preds.empty:
            preds["strategy"] = preds["strategy"].astype(str) + "@" + rid
        frames.append(preds)
        runs.append(run_facts(root, d.parent))
    preds = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(not f.empty for f in frames) \
        else pd.DataFrame()
    summary = summarize(preds) if not preds.empty else pd.DataFrame()
    pairs = cell_pairs(preds) if not preds.empty else pd.DataFrame()
    srows = [[r["task"], r["strategy"], r["model"], str(r["n"]), pct(r["accuracy"]),
              f"{pct(r['ci_low'], 0)}–{pct(r['ci_high'], 0)}"] for r in summary.to_dict("records")]
    prows = [[r["task"], f"{r['strategy_a']} · {r['model_a']}", f"{r['strategy_b']} · {r['model_b']}", str(r["n"]),
              pct(r["acc_a"]), pct(r["acc_b"]), pct(r["diff"]), f"{pct(r['ci_low'])} … {pct(r['ci_high'])}",
              fp(r["p_mcnemar"]), fp(r["p_holm"]), "significant" if r["p_holm"] < 0.05 else "not significant"]
             for r in pairs.to_dict("records")]
    items = []
    for task, g in (preds.groupby("task", sort=True) if not preds.empty else []):
        cols = sorted(set(zip(g["strategy"], g["model"])))
        shared = set.intersection(*[set(x["example_id"]) for _, x in g.groupby(["strategy", "model"])])
        ids_ = sorted(shared, key=str)[:MAX_ITEMS]
        by = {k: x.drop_duplicates("example_id").set_index("example_id") for k, x in g.groupby(["strategy", "model"])}
        rows = []
        for e in ids_:
            first = by[cols[0]].loc[e]
            rows.append({"id": str(e), "gold": str(first.get("gold")),
                         "cells": [{"answer": str(by[c].loc[e].get("answer")),
                                    "ok": bool(by[c].loc[e].get("correct")) if pd.notna(by[c].loc[e].get("correct"))
                                    else False} for c in cols]})
        items.append({"task": task, "cols": [f"{s} · {m}" for s, m in cols], "rows": rows, "shared": len(shared)})
    return {"runs": runs, "summary_rows": srows, "pairs_rows": prows, "items": items}


def _render(name: str, **ctx: Any) -> bytes:
    from jinja2 import Environment, FileSystemLoader

    from .report import TEMPLATES_DIR

    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(name).render(**ctx).encode("utf-8")


def make_handler(root: Path):
    root = root.resolve()

    class Handler(BaseHTTPRequestHandler):
        server_version = "harness-view"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: the terminal shows the URL only
            pass

        def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _not_found(self) -> None:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")

        def do_HEAD(self) -> None:  # noqa: N802 - http.server API
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            url = urlsplit(self.path)
            q = parse_qs(url.query)
            one = lambda k: (q.get(k) or [""])[0].strip()  # noqa: E731
            try:
                if url.path == "/":
                    runs = [run_facts(root, d) for d in find_runs(root)]
                    shown = [r for r in runs if _matches(r, one("task"), one("model"), one("template"))]
                    self._send(200, _render("view_index.html.j2", root=str(root), runs=shown, total=len(runs),
                                            f={"task": one("task"), "model": one("model"),
                                               "template": one("template")}))
                elif url.path == "/compare":
                    ids = list(dict.fromkeys(q.get("run") or []))
                    if len(ids) < 2:
                        self._send(400, _render("view_message.html.j2", message="Tick two or more runs to compare."))
                        return
                    try:
                        ctx = compare_context(root, ids)
                    except FileNotFoundError:
                        self._not_found()
                        return
                    self._send(200, _render("view_compare.html.j2", **ctx))
                elif url.path.startswith("/runs/"):
                    p = safe_path(root, url.path[len("/runs/"):])
                    if p is None or p.suffix not in SERVED:
                        self._not_found()
                        return
                    self._send(200, p.read_bytes(), SERVED[p.suffix] or mimetypes.guess_type(p.name)[0])
                else:
                    self._not_found()
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def make_server(root: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                allow_remote: bool = False) -> ThreadingHTTPServer:
    """The server (not started): `srv.serve_forever()`; its URL is view_url(srv)."""
    check_bind(host, allow_remote)
    r = Path(root)
    if not r.is_dir():
        raise ConfigError("results folder does not exist", where=str(root), field="RESULTS_DIR",
                          fix="give the folder holding run folders (default results/)")
    return ThreadingHTTPServer((host, port), make_handler(r))


def view_url(srv: ThreadingHTTPServer) -> str:
    host, port = srv.server_address[:2]
    return f"http://{'[' + host + ']' if ':' in str(host) else host}:{port}/"


def start_in_thread(root: str | Path, **kw: Any) -> tuple[ThreadingHTTPServer, str]:
    """For tests and notebooks: serve in a daemon thread; returns (server, url). Stop with srv.shutdown()."""
    srv = make_server(root, **kw)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, view_url(srv)
