"""`harness run --resume RUN_DIR`: the run's own spec, read back from run.json, so a resumed run is the run
it was (the same backend and base URL, cache setting, latency measures, prices, seed and limit).
A folder written before run specs existed is resumed from its recorded config, as before."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .spec import RunSpec, read_spec


def _meta(run_dir: Path) -> dict:
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise ConfigError("not a run folder (no run.json)", where=str(run_dir), field="--resume",
                          fix="pass a folder written by harness run")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["config"]["task_files"], meta["config"]["strategies"]  # noqa: B018 - both must be there
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"run.json is not a run record ({type(exc).__name__}: {exc})", where=str(meta_path),
                          field="--resume", fix="resume a folder written by harness run") from None
    return meta


def resume_spec(run_dir: str | Path) -> tuple[RunSpec, list[str] | None]:
    """(the spec to run again, display names to keep or None). The folder is `out`."""
    d = Path(run_dir)
    meta = _meta(d)
    spec = read_spec(d)
    if spec is not None:
        return spec.model_copy(update={"out": str(d), "run_id": None}), None
    return _legacy_spec(d, meta["config"])


def _legacy_spec(d: Path, cfg: dict[str, Any]) -> tuple[RunSpec, list[str] | None]:
    """A pre-spec run.json: tasks, strategies (or its suite), limit, seed, data folder, chunk size and the
    offline engine's model under the display name its rows carry."""
    fields: dict[str, Any] = {"out": str(d), "tasks": cfg["task_files"], "strategies": cfg["strategies"],
                              "limit": cfg.get("limit"), "seed": cfg.get("seed", 0),
                              "data_dir": cfg.get("data_dir"), "chunk_size": cfg.get("chunk_size")}
    if cfg.get("suite"):
        files = dict(zip(cfg["tasks"], cfg["task_files"]))
        fields.update(tasks=(), strategies=(), suite={files.get(t, t): ss for t, ss in cfg["suite"].items()})
    names = None
    models = cfg.get("models")
    if models and len(models) > 1:
        fields["models"] = [(m["spec"] + "@" + m["base_url"]) if m.get("base_url") else m["spec"] for m in models]
        names = [m["name"] for m in models]
    elif cfg.get("model_spec"):
        fields["models"] = [cfg["model_spec"]]
        names = [cfg["model"]] if cfg.get("model") else None
    return RunSpec.build(str(d / "run.json"), **fields), names


def check_resume_flags(given: list[str], run_dir: str | Path) -> None:
    """A flag that would change the spec is refused next to --resume (the folder is untouched)."""
    if given:
        flags = ", ".join("--" + g.replace("_", "-") for g in given)
        raise ConfigError(f"{flags} would change the run being resumed", where=str(run_dir), field="--resume",
                          fix="resume without it, or write the changed run into a new folder with --out")
