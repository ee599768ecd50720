"""`harness run ... --watch`: run, print the summary, then re-run whenever a file the run reads changes
(harness/runs/watch.py says which), printing what changed and each cell next to the previous iteration
with the paired test (harness/reports/iterate.py). Ctrl-C ends it. docs/iterate.md.

Every iteration runs into the same run folder with `force`: a unit whose identity did not change comes
from the journal, a changed one runs (labelled SPEC@CONFIG in the folder, compared as SPEC). The backend is
built once and kept while the model and engine options stay the same (the warm engine when one matches,
else an engine of its own that stays loaded between iterations). A bad edit (a template that no longer
renders) prints its one line and the watch goes on.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable


def _rows(preds) -> Any:
    """This iteration's rows: those of the spec's own units (the folder keeps older iterations too)."""
    ids = set(preds.attrs.get("unit_ids") or [])
    return preds[preds["unit_id"].isin(ids)] if ids else preds


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Backends:
    """One backend kept across iterations while (models, backend, options, engine) stay the same."""

    def __init__(self, given: Any = None) -> None:
        self.given, self.key, self.backend = given, None, None

    def get(self, spec) -> Any:
        if self.given is not None:
            return self.given
        if len(spec.models) > 1:
            return None  # several models: each iteration starts them in turn (multimodel.py)
        key = repr((spec.models, spec.backend, spec.backend_options, spec.engine))
        if key != self.key:
            self.close()
            from .api import spec_backends
            from .runs.multimodel import split_model_spec

            name, url = split_model_spec(spec.models[0] if spec.models else None)
            self.backend, self.key = spec_backends(spec)(name, url)[0], key
        return self.backend

    def release(self) -> None:
        """Between iterations: a warm engine's connection is closed, so other runs (and its idle timeout)
        are not held by a watch that waits for an edit; the next iteration connects again."""
        from .backends.warm import WarmBackend

        if isinstance(self.backend, WarmBackend):
            self.backend.close()

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.backend, self.key = None, None


def watch(a, build_spec: Callable, *, backend: Any = None, poll_s: float = 0.5,
          stop: Callable[[], bool] | None = None, say: Callable[[str], None] = print) -> int:
    """The watch loop of `harness run --watch` (`a`: its flags; `build_spec(a)` as the CLI's). `backend` and
    `stop` are for tests and notebooks: a backend to use, and a function that ends the loop when true."""
    from .api import run_spec
    from .errors import HarnessError
    from .reports.iterate import compare_iterations
    from .reports.summary import print_summary
    from .runs.runner import RunInterrupted
    from .runs.spec import RunSpec
    from .runs.watch import changed, snapshot, watched_files

    backends = _Backends(backend)
    spec, names, _ = build_spec(a)
    run_dir = None
    try:
        preds = run_spec(spec, backend=backends.get(spec), progress=not a.quiet, verbose=a.verbose, display_names=names)
        backends.release()
        run_dir = Path(preds.attrs["run_dir"])
        print_summary(run_dir)
        current = _rows(preds)
        files = watched_files(spec, experiment=a.experiment)
        snap = snapshot(files)
        say(f"watching {len(files)} files ({', '.join(_show(p) for p in files)}); Ctrl-C ends")
        while stop is None or not stop():
            time.sleep(poll_s)
            new = snapshot(files, snap)
            diff = changed(snap, new)
            if not diff:
                continue
            snap = new
            say(f"changed: {', '.join(_show(p) for p in diff)}")
            t0 = time.perf_counter()
            try:
                spec, _, _ = build_spec(a)
                spec = RunSpec.build("watch", **{**spec.record(), "out": str(run_dir), "force": True})
                preds = run_spec(spec, backend=backends.get(spec), progress=not a.quiet, verbose=a.verbose)
                backends.release()
                files = watched_files(spec, experiment=a.experiment)
                snap = snapshot(files, snap)
            except HarnessError as exc:  # a half-done edit: say it, keep watching
                say(f"error: {exc.one_line()} (still watching)")
                continue
            rows = _rows(preds)
            say(f"re-ran {len(preds.attrs.get('ran_ids') or [])} of {len(rows)} units in "
                f"{time.perf_counter() - t0:.1f} s (the rest from the journal); before -> now:")
            say("\n".join(compare_iterations(current, rows)))
            current = rows
    except RunInterrupted as exc:
        print(f"\nwatch ended during a run: what was done is kept. Resume with:\n  harness run --resume {exc.run_dir}",
              file=sys.stderr)
        run_dir = exc.run_dir
    except KeyboardInterrupt:
        print("\nwatch ended", file=sys.stderr)
    finally:
        backends.close()
    if run_dir is not None:
        print(run_dir)
    return 0
