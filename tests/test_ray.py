"""`--backend ray` on a real Ray cluster started here: a head and a second node (`ray start`), 1 CPU each.

Engine tests (the `engine` marker) run the real vLLM engine in each replica on the bundled model: the same rows
as the single offline engine, units on both replicas and nodes; kill -9 of one replica's engine core mid-run;
SIGTERM to `harness run --backend ray --ray-address local`. The others run scripted replicas
(tests/ray_answers.py) on the same cluster: routing, retry, every replica gone, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import importlib.util  # noqa: E402

# not imported here: Ray reads its token settings when first imported. Never skipped: without Ray these tests
# would prove nothing, so a missing extra fails the collection with the fix.
assert importlib.util.find_spec("ray") is not None, \
    "the ray extra is not installed: pip install -e '.[ray]' (scripts/install.sh --test installs it)"

import harness  # noqa: E402
from harness.backends.routing import Router, chunk_key, prefix_key  # noqa: E402
from harness.records import Message, Request  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proctree  # noqa: E402
from raycluster import Cluster, marked  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HARNESS = str(Path(sys.executable).with_name("harness"))
TASKS = ["larger_number", "country_capital"]
STRATS = ["zero_shot", "few_shot:k=3", "self_consistency:k=3"]


@pytest.fixture(scope="module")
def cluster():
    """This process never joins the cluster (its token is in c.env only): every driver is a subprocess with c.env."""
    c = Cluster(nodes=2, cpus_per_node=1)
    yield c
    left = c.stop()
    assert not left, f"processes of the test cluster outlived it: {left}"


def _journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "journal.jsonl").read_text().splitlines() if line.strip()]


def _drive(cluster, out: Path, tasks: list[str], strategies: list[str], *, limit: int, chunk_size: int,
           make: str = "make", timeout: float = 300) -> subprocess.CompletedProcess:
    """A scripted run on the cluster by tests/ray_driver.py, in a process with the cluster's token in its
    environment before Ray is imported (in pytest an earlier test may have imported it via vLLM): exit 0 when
    the run completes, 3 with the BackendError's line last on stderr."""
    args = {"address": cluster.address, "tasks": tasks, "strategies": strategies, "limit": limit,
            "chunk_size": chunk_size, "make": make, "out": str(out)}
    return subprocess.run([sys.executable, str(Path(__file__).with_name("ray_driver.py")), json.dumps(args)],
                          env=cluster.env, capture_output=True, text=True, timeout=timeout)


def _rows(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "predictions.parquet")


# --------------------------------------------------------------------------- routing (pure)

def _req(key: str, system: str | None, q: str) -> Request:
    msgs = ((Message("system", system),) if system else ()) + (Message("user", q),)
    return Request(key, msgs)


def test_prefix_key_is_the_turns_before_the_last_and_none_without_them():
    assert prefix_key(_req("a", "S", "q1")) == prefix_key(_req("b", "S", "q2")) != prefix_key(_req("c", "T", "q1"))
    assert prefix_key(_req("a", None, "q")) is None
    assert chunk_key([_req("a", None, "q"), _req("b", "S", "q"), _req("c", "S", "r")]) == prefix_key(_req("x", "S", "z"))


def test_router_keeps_a_prefix_on_its_replica_until_that_replica_falls_behind():
    r = Router(2, depth=4)
    assert r.pick("A", 10) == 0 and r.pick("B", 10) == 1
    assert r.pick("A", 10) == 0 and r.pick("A", 10) == 0  # A's home, up to one chunk ahead of the other
    assert r.pick("A", 10) == 1  # A's home is now 20 requests ahead of replica 1: the key moves
    assert r.home["A"] == 1
    r.live.discard(1)
    assert r.pick("A", 10) == 0  # a dead replica takes nothing
    assert r.pick(None, 1) is None  # replica 0 holds depth=4 chunks, 1 is dead: wait
    r.done(0, 10)
    assert r.pick(None, 1) == 0  # a chunk came back: room again


# --------------------------------------------------------------------------- scripted replicas on the cluster

def test_a_scripted_run_spreads_over_both_nodes_and_journals_where(cluster, tmp_path):
    res = _drive(cluster, tmp_path / "r", ["larger_number"], ["zero_shot", "few_shot:k=2", "few_shot:k=3"], limit=8,
                 chunk_size=4)
    assert res.returncode == 0, res.stderr[-3000:]
    df, entries = _rows(tmp_path / "r"), _journal(tmp_path / "r")
    assert len(df) == 24 and len(entries) == 24 and df["error"].isna().all()
    assert {e["w"]["replica"] for e in entries} == {0, 1}
    assert len({e["w"]["node"] for e in entries}) == 2  # one replica per 1-CPU node
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert meta["backend"] == "ray" and meta["engine"]["ray"]["replicas"] == 2
    assert not [a for a in marked(cluster.mark) if "harness-" in _cmdline(a)]  # this run's actors are gone


def test_a_replica_that_dies_mid_chunk_loses_only_that_chunk(cluster, tmp_path):
    (Path(cluster.temp) / "crash" / "once").write_text("")
    res = _drive(cluster, tmp_path / "r", ["larger_number"], ["zero_shot", "few_shot:k=3"], limit=20, chunk_size=4)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not (Path(cluster.temp) / "crash" / "once").exists()  # a replica did die on the chunk holding 13
    df, entries = _rows(tmp_path / "r"), _journal(tmp_path / "r")
    ids = [e["u"]["id"] for e in entries]
    assert len(df) == 40 and len(ids) == 40 and len(set(ids)) == 40  # every unit once
    retried = [e for e in entries if e["w"]["attempt"] == 2]
    assert retried and any("13" in e["p"]["prompt"] for e in retried)  # the lost chunk, answered on its 2nd attempt
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert len(meta["engine"]["ray"]["retries"]) >= 1


def test_a_replica_whose_engine_process_is_killed_mid_chunk_is_restarted_and_its_chunk_resent(cluster, tmp_path):
    """kill -9 of a replica's engine process while its generate waits on it (vLLM 0.32's LLM.generate then waits
    forever): the replica's own watch ends the actor, the chunk goes to the other replica, nothing is lost."""
    import threading

    out = tmp_path / "r"
    killed: list[int] = []

    def kill_one():
        _wait(lambda: (out / "journal.jsonl").exists() and (out / "journal.jsonl").stat().st_size, 120, "a chunk")
        core = _wait(lambda: [p for p in marked(cluster.mark) if _cmdline(p).startswith("VLLM::FakeCore")], 30, "core")
        os.kill(core[0], signal.SIGKILL)
        killed.append(core[0])

    t = threading.Thread(target=kill_one, daemon=True)  # here, in pytest: it only reads /proc and the journal
    t.start()
    res = _drive(cluster, out, ["larger_number"], ["zero_shot", "few_shot:k=3"], limit=20, chunk_size=2,
                 make="make_hanging")
    t.join(5)
    assert res.returncode == 0, res.stderr[-3000:]
    df, entries = _rows(out), _journal(out)
    ids = [e["u"]["id"] for e in entries]
    assert killed and len(df) == 40 and len(ids) == 40 and len(set(ids)) == 40
    assert any(e["w"]["attempt"] == 2 for e in entries), "the lost chunk was not resent"


def test_with_every_replica_gone_the_run_stops_with_the_resume_command(cluster, tmp_path):
    (Path(cluster.temp) / "crash" / "always").write_text("")
    try:
        res = _drive(cluster, tmp_path / "r", ["larger_number"], ["zero_shot"], limit=20, chunk_size=4)
    finally:
        (Path(cluster.temp) / "crash" / "always").unlink()
    assert res.returncode == 3, res.stderr[-3000:]  # the driver's BackendError
    line = [ln for ln in res.stderr.splitlines() if ln.strip()][-1]  # err.one_line()
    assert f"harness run --resume {tmp_path / 'r'}" in line, res.stderr[-3000:]
    kept = _journal(tmp_path / "r")
    assert 0 < len(kept) < 20  # what was done is kept
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "interrupted"


_SIGNALLED = """
import sys
import harness
from harness.backends.ray import RayBackend
from harness.runs.runner import RunInterrupted
from harness.system.procs import exit_code, guard, handle_signals
from ray_answers import make_slow

if __name__ == "__main__":
    handle_signals()  # as `harness run` does
    guard()
    backend = RayBackend(None, replicas=2, address=sys.argv[2] if len(sys.argv) > 2 else "local", make=make_slow)
    try:
        harness.run(["larger_number"], ["zero_shot", "few_shot:k=3"], backend=backend, limit=40, out=sys.argv[1],
                    progress=False, cache=False, chunk_size=4)
    except RunInterrupted:
        backend.close()
        sys.exit(exit_code())
    backend.close()
"""


def test_sigterm_on_a_local_cluster_leaves_no_process_with_scripted_replicas(tmp_path):
    """The local cluster the backend starts (GCS, raylet, workers, both replicas) is gone 10 s after SIGTERM, and
    ray.init's own SIGTERM handler did not replace the harness's (exit 143, the run folder says interrupted)."""
    script, out = tmp_path / "run.py", tmp_path / "r"
    script.write_text(_SIGNALLED)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent), "RAY_DISABLE_USAGE_STATS": "1"}
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_AUTH_MODE", None)
    proc = subprocess.Popen([sys.executable, str(script), str(out)], env=env, stderr=subprocess.PIPE, text=True)
    _sigterm_after_a_chunk(proc, out, 180, lambda cmds: any("raylet" in c for c in cmds)
                           and sum("_Replica" in c for c in cmds) == 2)
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert 0 < len(_journal(out)) < 80


_BYSTANDER = """
import sys
import ray

ray.init(address=sys.argv[1], namespace="other", log_to_driver=False)


@ray.remote(num_cpus=0)
class Bystander:
    def ping(self):
        return "pong"


if sys.argv[2] == "start":
    print(ray.get(Bystander.options(name="bystander", lifetime="detached").remote().ping.remote()))
else:
    actor = ray.get_actor("bystander")
    print(ray.get(actor.ping.remote()), sum(1 for n in ray.nodes() if n["Alive"]))
    ray.kill(actor)
"""


def test_sigterm_on_a_shared_cluster_removes_only_this_runs_actors(cluster, tmp_path):
    """On a cluster the harness did not start, SIGTERM ends this run's replicas and nothing else: another
    driver's (detached) actor still answers, both nodes are still up."""
    bystander, script, out = tmp_path / "bystander.py", tmp_path / "run.py", tmp_path / "r"
    bystander.write_text(_BYSTANDER)
    script.write_text(_SIGNALLED)
    other = subprocess.run([sys.executable, str(bystander), cluster.address, "start"], env=cluster.env,
                           capture_output=True, text=True, timeout=120)
    assert other.stdout.strip() == "pong", other.stderr[-2000:]

    def replicas() -> list[int]:
        return [p for p in cluster.leftovers() if "_Replica" in _cmdline(p)]

    proc = subprocess.Popen([sys.executable, str(script), str(out), cluster.address], env=cluster.env,
                            stderr=subprocess.PIPE, text=True)
    _sigterm_after_a_chunk(proc, out, 180, lambda cmds: len(replicas()) == 2)
    assert replicas() == []
    after = subprocess.run([sys.executable, str(bystander), cluster.address, "check"], env=cluster.env,
                           capture_output=True, text=True, timeout=120)
    assert after.stdout.split() == ["pong", "2"], after.stderr[-2000:]
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


_INIT_SIGTERM = """
import os, signal, sys, time
from harness.backends.ray import _signals_kept
from harness.system.procs import exit_code, handle_signals


def rays(signum, frame):  # what ray.init installs while it starts or joins a cluster
    sys.exit(signum)


handle_signals()  # as `harness run` does
try:
    with _signals_kept():
        signal.signal(signal.SIGTERM, rays)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
except KeyboardInterrupt:
    print("interrupted", exit_code(), signal.getsignal(signal.SIGTERM) is not rays)
    sys.exit(exit_code())
"""


def test_sigterm_while_ray_init_runs_is_handled_as_the_harness_handles_it():
    """The signal matrix's ray row once exited 15 on SIGTERM during engine start: Ray's handler was active inside
    ray.init. Now the signal reaches the harness's handler (exit 143, the usual interrupted path)."""
    res = subprocess.run([sys.executable, "-c", _INIT_SIGTERM], capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout.split()) == (143, ["interrupted", "143", "True"]), res.stderr[-2000:]


BAD = {  # docs/bad-input.md, "--backend ray"
    "ray-replicas-zero": (["--backend", "ray", "--replicas", "0"], "--replicas"),
    "ray-address-closed": (["--backend", "ray", "--ray-address", "127.0.0.1:9"], "nothing answers at 127.0.0.1:9"),
    "ray-address-malformed": (["--backend", "ray", "--ray-address", "nohost"], "--ray-address"),
    "ray-flag-without-backend": (["--replicas", "2"], "--replicas needs --backend ray"),
}


def test_docs_bad_input_lists_the_ray_cases():
    doc = (ROOT / "docs" / "bad-input.md").read_text()
    assert [c for c in BAD if f"`{c}`" not in doc] == []


@pytest.mark.parametrize("flags, needle", list(BAD.values()), ids=list(BAD))
def test_bad_ray_flags_are_one_line_exit_2(tmp_path, flags, needle):
    res = subprocess.run([HARNESS, "run", "--task", "larger_number", "--strategy", "zero_shot", "--limit", "2",
                          "--no-cache", "--out", str(tmp_path / "r"), *flags], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "Token authentication" not in ln]
    assert needle in lines[-1] and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _sigterm_after_a_chunk(proc: subprocess.Popen, out: Path, timeout: float, started) -> str:
    """Once the run has journaled a first chunk: record its process tree, check `started(command lines)`, send
    SIGTERM to the harness process alone; it must exit 143 and leave no process of the tree alive 10 s later.
    Returns its stderr."""
    try:
        _wait(lambda: (out / "journal.jsonl").exists() and (out / "journal.jsonl").stat().st_size, timeout,
              "a first chunk")
        recorded = proctree.tree(proc.pid)
        assert started([_cmdline(p) for p in recorded])
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    time.sleep(10)
    assert not proctree.alive(recorded), [(p, _cmdline(p)) for p in proctree.alive(recorded)]
    return err


# --------------------------------------------------------------------------- the real engine in each replica

def _ray_run(cluster, out: Path, *extra: str, limit: int = 3, address: str | None = None, env=None):
    cmd = [HARNESS, "run", "--backend", "ray", "--replicas", "2", "--ray-address", address or cluster.address,
           "--no-cache", "--no-report", "--quiet", "--limit", str(limit), "--out", str(out), *extra]
    for t in TASKS:
        cmd += ["--task", t]
    for s in STRATS:
        cmd += ["--strategy", s]
    return cmd


@pytest.mark.engine
def test_two_replicas_on_two_nodes_give_the_offline_engines_rows(cluster, engine, tmp_path):
    # the rows are compared on float32 engines (bf16 answers may differ with the batch): the replicas are told
    # so, and on a CPU whose default is bf16 the reference runs on a float32 engine of its own
    if engine.engine_settings()["dtype"] == "float32":
        harness.run(TASKS, STRATS, backend=engine, limit=3, out=tmp_path / "offline", progress=False, cache=False)
    else:
        cmd = [HARNESS, "run", "--dtype", "float32", "--no-cache", "--no-report", "--quiet", "--limit", "3",
               "--out", str(tmp_path / "offline")] + [x for t in TASKS for x in ("--task", t)] \
            + [x for s in STRATS for x in ("--strategy", s)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    ref = pd.read_parquet(tmp_path / "offline" / "predictions.parquet")
    t0 = time.time()
    res = subprocess.run(_ray_run(cluster, tmp_path / "ray", "--dtype", "float32"), env=cluster.env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    wall = time.time() - t0
    sys.path.insert(0, str(ROOT / "scripts"))
    from compare_runs import compare

    diffs = [d for d in compare(tmp_path / "offline", tmp_path / "ray")
             if d.rpartition(") ")[2].split(":")[0] not in ("backend", "cached_prompt_tokens")]
    assert not diffs, diffs[:10]  # every non-timing column but `backend` (ray) and the prefix-cache hits
    ray_df = pd.read_parquet(tmp_path / "ray" / "predictions.parquet")
    assert len(ray_df) == len(ref) == 18 and set(ray_df["backend"]) == {"ray"}
    entries = _journal(tmp_path / "ray")
    assert {e["w"]["replica"] for e in entries} == {0, 1} and len({e["w"]["node"] for e in entries}) == 2
    print(f"ray run of 18 units on 2 replicas: {wall:.1f} s")


def _engine_cores(mark: str) -> list[int]:
    return [p for p in marked(mark) if "EngineCore" in _cmdline(p) or "VLLM::Engine" in _cmdline(p)]


def _wait(cond, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.engine
def test_kill_9_of_one_replicas_engine_mid_run_loses_nothing(cluster, tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(_ray_run(cluster, out, "--chunk-size", "2", limit=4), env=cluster.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cores = _wait(lambda: len(_engine_cores(cluster.mark)) >= 2 and _engine_cores(cluster.mark), 300,
                      "two engine cores")
        _wait(lambda: (out / "journal.jsonl").exists() and (out / "journal.jsonl").stat().st_size, 300,
              "a first chunk")
        os.kill(cores[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=500)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    entries = _journal(out)
    ids = [e["u"]["id"] for e in entries]
    assert len(ids) == 24 and len(set(ids)) == 24  # N rows, 0 duplicates
    assert len(pd.read_parquet(out / "predictions.parquet")) == 24
    assert any(e["w"]["attempt"] > 1 for e in entries), "no chunk was retried"
    assert json.loads((out / "run.json").read_text())["engine"]["ray"]["retries"]


@pytest.mark.engine
def test_sigterm_leaves_no_process_of_the_run_and_the_resume_completes_it(tmp_path):
    out = tmp_path / "r"
    env = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1"}
    proc = subprocess.Popen(_ray_run(None, out, "--chunk-size", "2", limit=2, address="local"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = _sigterm_after_a_chunk(proc, out, 400, lambda cmds: sum("EngineCore" in c or "VLLM" in c for c in cmds) >= 2)
    assert f"harness run --resume {out}" in err
    done = len(_journal(out))
    assert 0 < done < 12
    res = subprocess.run([HARNESS, "run", "--resume", str(out), "--quiet", "--no-report"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ids = [e["u"]["id"] for e in _journal(out)]
    assert len(ids) == 12 and len(set(ids)) == 12
