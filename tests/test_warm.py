"""The warm engine's protocol, files and client, with an in-memory backend held by the daemon's own
`serve` loop in a thread (the real engine: tests/test_warm_engine.py). Checked: the socket and token are
private (0600 in a 0700 folder), a connection without the token is refused before anything is unpickled,
the records cross the socket unchanged, a second run waits for the first, a mismatched engine is never
used, the CLI's bad input is one line with exit 2, and an engine lost mid-run stops the run with its
resume command and nothing lost."""
from __future__ import annotations

import os
import pickle
import socket
import stat
import threading
import time

import pandas as pd
import pytest

import harness
from harness.backends import warm_wire as wire
from harness.backends.scripted import ScriptedBackend
from harness.backends.warm import WarmBackend, attach, mismatch
from harness.backends.warm_daemon import listen, serve
from harness.cli import main
from harness.errors import BackendError
from harness.records import Completion, Message, OutputType, Request, Sampling


class Boom(BaseException):
    """Ends the daemon's serving thread as a SIGKILL ends the daemon: the connection just closes."""


def _answer(r: Request):
    return "heads" if r.sampling.n == 1 else ["heads"] * r.sampling.n


@pytest.fixture
def rt(tmp_path, monkeypatch):
    folder = tmp_path / "rt"
    monkeypatch.setenv("HARNESS_RUNTIME_DIR", str(folder))
    from harness.system.paths import runtime_dir
    return runtime_dir()


def _daemon(folder, backend, *, idle_s=30.0):
    """serve() in a thread with a ready state file, as run_daemon writes it."""
    p = wire.paths(folder)
    token = wire.new_token(p["token"])
    srv = listen(p["socket"])
    me = os.getpid()
    state = {"pid": me, "pid_start": wire.start_time(me), "status": "ready", "dir": str(folder),
             "model_name": backend.model_name, "model_path": backend.model_path,
             "settings": backend.engine_settings(), "socket": str(p["socket"]), "idle_s": idle_s}
    wire.write_state(state, folder)
    out: dict = {}

    def target():
        try:
            out["why"] = serve(backend, srv, token, idle_s=idle_s, log=lambda m: out.setdefault("log", []).append(m))
        except Boom:
            out["why"] = "boom"
        finally:
            srv.close()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return state, t, out


def test_files_are_private_and_a_connection_without_the_token_is_refused(rt):
    backend = ScriptedBackend(_answer)
    state, t, out = _daemon(rt, backend, idle_s=3)
    p = wire.paths(rt)
    assert stat.S_IMODE(rt.stat().st_mode) == 0o700
    for key in ("socket", "token", "state"):
        assert stat.S_IMODE(p[key].stat().st_mode) == 0o600, key
    assert stat.S_ISSOCK(p["socket"].stat().st_mode)
    # a wrong token: the daemon closes the connection and never unpickles what follows
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(p["socket"]))
    try:
        wire.send_frame(s, b"0" * 64)
        wire.send_frame(s, pickle.dumps(("generate", ([],))))
        assert wire.recv_frame(s) is None  # closed (reset or a broken pipe, depending on the moment)
    except (ConnectionResetError, BrokenPipeError):
        pass
    s.close()
    assert backend.calls == []
    assert any("without the engine's token" in m for m in out["log"])
    t.join(10)
    assert out["why"] == "idle for 3 s"  # the idle timeout stops it


def test_records_cross_the_socket_unchanged(rt):
    def fn(r):
        return Completion(texts=(r.key,) * r.sampling.n, prompt_tokens=7, completion_tokens=(1,) * r.sampling.n,
                          finish_reasons=("stop",) * r.sampling.n, cumulative_logprobs=(-0.5,) * r.sampling.n,
                          latency_s=0.25, ttft_s=0.125, cached_prompt_tokens=3)

    backend = ScriptedBackend(fn)
    state, t, _ = _daemon(rt, backend)
    reqs = [Request("a", (Message("user", "hi"),), Sampling(n=3, temperature=0.7, seed=1)),
            Request("b", (), output_type=OutputType("json", '{"type": "object"}'), prompt="x"),
            Request("c", (Message("user", "q"),), continuations=(" yes", " no"))]
    warm = WarmBackend(state)
    try:
        assert warm.generate(reqs) == backend.generate(reqs)  # frozen records compare by value
        assert backend.calls == [3, 3]  # one batch, as sent
        assert warm.identity() == backend.identity()  # the request cache and journal see the same engine
        assert warm.engine_settings()["warm_engine"]["pid"] == os.getpid()
    finally:
        warm.close()


def test_a_second_run_waits_for_the_first(rt, capsys):
    backend = ScriptedBackend(_answer)
    state, t, _ = _daemon(rt, backend)
    first, second = WarmBackend(state), WarmBackend(state)
    first.start()
    done = []
    th = threading.Thread(target=lambda: done.append(second.generate([Request("k", (Message("user", "x"),))])))
    th.start()
    time.sleep(2.0)
    assert not done  # held in the backlog while the first run is connected
    first.close()
    th.join(10)
    second.close()
    assert done and done[0][0].texts == ("heads",)
    assert "busy with another run: waiting" in capsys.readouterr().err


def test_a_mismatched_engine_is_never_used(rt, capsys):
    backend = ScriptedBackend(_answer)
    backend.name = "vllm"  # attach() considers only offline-engine backends
    _daemon(rt, backend)

    class Other(ScriptedBackend):
        name = "vllm"

        def engine_settings(self):
            return {**super().engine_settings(), "dtype": "bfloat16"}

    other = Other(_answer)
    assert "dtype" in mismatch(wire.read_state(rt), other)
    assert attach(other) is other
    assert "not using the warm engine" in capsys.readouterr().err
    same = ScriptedBackend(backend.fn)
    same.name = "vllm"
    assert mismatch(wire.read_state(rt), same) is None
    got = attach(same)
    assert isinstance(got, WarmBackend)
    assert "using the warm engine (pid" in capsys.readouterr().err
    os.environ["HARNESS_WARM"] = "0"
    try:
        assert attach(same) is same
        os.environ["HARNESS_WARM"] = "require"  # asked for explicitly: a mismatch is an error, not a fallback
        from harness.errors import ConfigError
        with pytest.raises(ConfigError, match="dtype") as e:
            attach(other)
        assert "harness engine start" in e.value.one_line()
        assert isinstance(attach(same), WarmBackend)
    finally:
        del os.environ["HARNESS_WARM"]


def test_an_engine_lost_mid_run_stops_the_run_with_its_resume_command(rt, tmp_path):
    calls = []

    def fn(r):
        calls.append(r.key)
        if len(calls) > 2:
            raise Boom()  # the daemon's thread ends: its connection closes as a killed daemon's does
        return "heads"

    state, t, out = _daemon(rt, ScriptedBackend(fn))
    run_dir = tmp_path / "run"
    with pytest.raises(BackendError) as e:
        harness.run(["coin_flip"], ["zero_shot"], backend=WarmBackend(state), limit=6, chunk_size=2,
                    out=str(run_dir), cache=False, latency_calibration=0)
    line = e.value.one_line()
    assert "is gone" in line and f"harness run --resume {run_dir}" in line, line
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    assert len(preds) == 2  # the first chunk is kept
    import json
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert meta["config"]["model_spec"] == "bundled"  # the offline engine's default, as in a cold run (judges use it)
    assert meta["engine"]["warm_engine"]["pid"] == os.getpid() and meta["backend"] == "scripted"
    # the resume on a fresh engine completes exactly the rest
    rest = ScriptedBackend(_answer)
    df = harness.run(["coin_flip"], ["zero_shot"], backend=rest, limit=6, chunk_size=2, out=str(run_dir),
                     cache=False, latency_calibration=0)
    assert len(df) == 6 and sum(rest.calls) == 4


def test_cli_bad_input_is_one_line_and_exit_2(rt, capsys):
    assert main(["engine", "stop"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no warm engine is running" in err and "harness engine start" in err
    # a stale state (its process is gone): named, removed, exit 2
    wire.write_state({"pid": 999999, "pid_start": 1, "status": "ready", "dir": str(rt)}, rt)
    wire.paths(rt)["socket"].touch()
    assert main(["engine", "stop"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pid 999999" in err and "stale" in err and err.count("\n") == 0
    assert not wire.paths(rt)["state"].exists() and not wire.paths(rt)["socket"].exists()
    assert main(["engine", "status"]) == 1
    assert "no warm engine" in capsys.readouterr().out
    assert main(["engine", "start", "--idle", "0"]) == 2
    assert "--idle" in capsys.readouterr().err
    assert main(["engine", "start", "--model", str(rt.parent / "no-such-model")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err and not wire.paths(rt)["log"].exists(), err
    # a run that asks for the warm engine explicitly (HARNESS_WARM=require) and finds none: exit 2, before any engine
    os.environ["HARNESS_WARM"] = "require"
    try:
        assert main(["run", "--task", "coin_flip", "--limit", "1", "--out", str(rt.parent / "run")]) == 2
    finally:
        del os.environ["HARNESS_WARM"]
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "none is running" in err and "harness engine start" in err, err
    assert not (rt.parent / "run").exists()


def test_a_runtime_folder_others_can_enter_is_refused(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    monkeypatch.setenv("HARNESS_RUNTIME_DIR", str(folder))
    assert main(["engine", "status"]) == 2  # runtime-dir-not-private
    err = capsys.readouterr().err.strip()
    assert "is not private to this user" in err and err.count("\n") == 0, err

def test_watch_reruns_only_the_edited_templates_units(tmp_path, monkeypatch):
    """`harness run --watch`: an edit of one template variant re-runs that variant's units alone; the
    printed comparison names the file and gives the paired test on the same items. A broken edit is one
    line and the watch goes on."""
    import shutil
    from pathlib import Path

    from harness.cli import build_parser, build_spec
    from harness.cli_watch import watch

    monkeypatch.chdir(tmp_path)
    shutil.copy(Path(__file__).resolve().parents[1] / "prompts" / "coin_flip.j2", tmp_path / "mine.j2")
    backend = ScriptedBackend(lambda r: "The answer is no." if "FLIP" in str(r.messages) else "The answer is yes.")
    a = build_parser().parse_args(["run", "--task", "coin_flip", "--strategy", "zero_shot", "--strategy",
                                   "zero_shot:template=mine.j2", "--limit", "8", "--out", str(tmp_path / "run"),
                                   "--no-cache", "--no-report", "--quiet", "--watch", "--latency-calibration", "0"])
    said: list[str] = []
    steps = iter([
        lambda: (tmp_path / "mine.j2").write_text((tmp_path / "mine.j2").read_text().replace("careful", "FLIP")),
        lambda: (tmp_path / "mine.j2").write_text("{% block context %}{{ broken(){% endblock %}"),
    ])

    def stop() -> bool:
        text = "\n".join(said)
        if "watching" in text and not any("changed:" in s for s in said):
            next(steps)()
        elif "re-ran" in text and "still watching" not in text and text.count("changed:") == 1:
            next(steps)()
        return "still watching" in text

    assert watch(a, build_spec, backend=backend, poll_s=0.05, stop=stop, say=said.append) == 0
    text = "\n".join(said)
    assert "changed: mine.j2" in text, text
    assert backend.calls == [8, 8, 8]  # the first run (one call per cell), then only the edited variant's 8 units
    assert "re-ran 8 of 16 units" in text, text
    assert "coin_flip / zero_shot: unchanged" in text, text
    line = next(s for s in text.splitlines() if "zero_shot:template=mine.j2: accuracy" in s)
    gold_yes = sum(r.gold == "yes" for r in harness.load_task("coin_flip").examples[:8])
    assert f"accuracy {gold_yes / 8:.0%} -> {(8 - gold_yes) / 8:.0%}" in line, line
    assert f"paired on 8 items: {gold_yes} right only before, {8 - gold_yes} only now" in line, line
    assert "mine.j2" in text.split("still watching")[0].splitlines()[-1]  # the broken template is named


FAKE_DAEMON = """
import sys
from harness.backends import vllm
from harness.backends.scripted import ScriptedBackend

class Fake(ScriptedBackend):
    name = "vllm"
    def __init__(self, model=None, **kw):
        super().__init__(lambda r: "heads", model_name="fake")
        self.kw = kw
    def engine_settings(self):
        return {"dtype": self.kw.get("dtype"), "max_model_len": 2048}
    def close(self):
        print("closed", flush=True)

vllm.VLLMBackend = Fake
from harness.backends.warm_daemon import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_daemon_serves_until_stopped_and_removes_its_files(rt, tmp_path):
    """run_daemon's lifecycle with a stand-in for the engine: state `ready`, a run through the socket,
    `harness engine status`, then `harness engine stop` (SIGTERM): the engine closed, the files gone."""
    import subprocess
    import sys

    log = open(tmp_path / "daemon.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", FAKE_DAEMON, "--dir", str(rt), "--engine", '{"dtype": "float32"}',
                             "--idle", "60"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while (wire.read_state(rt) or {}).get("status") != "ready":
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()
            time.sleep(0.1)
        state = wire.read_state(rt)
        assert state["pid"] == proc.pid and state["settings"]["dtype"] == "float32"
        warm = WarmBackend(state)
        assert warm.generate([Request("k", (Message("user", "x"),))])[0].texts == ("heads",)
        warm.close()
        assert main(["engine", "status"]) == 0
        assert main(["engine", "start"]) == 2  # one is running already
        assert main(["engine", "stop"]) == 0
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "closed" in (tmp_path / "daemon.log").read_text()
    assert not any(wire.paths(rt)[k].exists() for k in ("socket", "token", "state"))


def test_watch_sees_the_task_file_its_template_the_data_and_the_experiment(tmp_path):
    """watched_files names every file a run reads; a save with the same bytes is no change, an edit is."""
    import json
    import shutil
    from pathlib import Path

    from harness.runs.spec import RunSpec
    from harness.runs.watch import changed, snapshot, watched_files

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "prompts" / "coin_flip.j2", tmp_path / "mine.j2")
    shutil.copy(root / "prompts" / "coin_flip_terse.j2", tmp_path / "short.j2")
    rows = [{"id": f"q{i}", "question": f"Is the coin heads up ({i})?", "answer": "yes" if i % 2 else "no"}
            for i in range(6)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "coins.yaml").write_text(
        "name: coins\nsource: {path: data.jsonl}\nfields: {question: question}\ngold_field: answer\n"
        "template: mine.j2\nanswer_type: label\nlabels: [\"yes\", \"no\"]\ntemplates: {short: short.j2}\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"tasks: [{tmp_path / 'coins.yaml'}]\nstrategies: [zero_shot, \"zero_shot:template=short\"]\n")
    spec = RunSpec.build("test", tasks=(str(tmp_path / "coins.yaml"),), strategies=("zero_shot", "zero_shot:template=short"))
    files = watched_files(spec, experiment=exp)
    assert {p.name for p in files} == {"exp.yaml", "coins.yaml", "mine.j2", "short.j2", "data.jsonl"}
    before = snapshot(files)
    (tmp_path / "data.jsonl").write_text((tmp_path / "data.jsonl").read_text())  # same bytes, new mtime
    assert changed(before, snapshot(files, before)) == []
    with open(tmp_path / "data.jsonl", "a") as f:
        f.write(json.dumps({"id": "q9", "question": "Still heads?", "answer": "yes"}) + "\n")
    (tmp_path / "short.j2").write_text((tmp_path / "short.j2").read_text() + "\n")
    assert [p.name for p in changed(before, snapshot(files, before))] == ["data.jsonl", "short.j2"]


def test_a_run_killed_mid_call_leaves_the_daemon_serving(rt, tmp_path):
    """SIGKILL of a client while the daemon works on its batch: the daemon finishes, finds the connection
    gone, and the next run is answered (the real engine: tests/test_warm_engine.py)."""
    import signal
    import subprocess
    import sys

    slow = FAKE_DAEMON.replace('lambda r: "heads"', 'lambda r: (__import__("time").sleep(1.5), "heads")[1]')
    log = open(tmp_path / "daemon.log", "w")
    daemon = subprocess.Popen([sys.executable, "-c", slow, "--dir", str(rt), "--idle", "60"], stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    client = None
    try:
        deadline = time.monotonic() + 60
        while (wire.read_state(rt) or {}).get("status") != "ready":
            assert daemon.poll() is None and time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()
            time.sleep(0.1)
        code = ("import sys; from harness.backends.warm import WarmBackend; from harness.backends import warm_wire as w;"
                "from harness.records import Request, Message; b = WarmBackend(w.read_state(w.paths()['dir']));"
                "print('sent', flush=True); b.generate([Request('k', (Message('user', 'x'),))])")
        client = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "HARNESS_RUNTIME_DIR": str(rt)})
        assert client.stdout.readline().strip() == "sent"
        time.sleep(0.7)  # inside the daemon's 1.5 s call
        client.send_signal(signal.SIGKILL)
        client.wait()
        warm = WarmBackend(wire.read_state(rt))
        assert warm.generate([Request("k2", (Message("user", "y"),))])[0].texts == ("heads",)
        warm.close()
        assert daemon.poll() is None
    finally:
        for p in (client, daemon):
            if p is not None and p.poll() is None:
                p.kill()
        daemon.wait()
    assert "connection ended" in (tmp_path / "daemon.log").read_text()


def test_docs_bad_input_lists_the_engine_cases():
    """docs/bad-input.md names each bad-input case of this file (the tests above check each one)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "bad-input.md").read_text()
    cases = ["engine-stop-none", "engine-stop-stale", "engine-start-running", "engine-start-bad-model",
             "engine-start-bad-idle", "warm-require-none", "warm-require-mismatch", "runtime-dir-not-private"]
    assert [c for c in cases if f"`{c}`" not in doc] == []
