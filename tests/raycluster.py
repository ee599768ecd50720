"""A real Ray cluster on this machine for the tests: `ray start --head` plus a second `ray start --address=...`
(a second node on the same machine), each with 1 CPU, token authentication on, a temp folder of its own.

Every process of the cluster carries a marker in its environment, so `stop()` ends exactly this cluster's
processes (never another Ray on the machine, as `ray stop` would) and `leftovers()` lists any still alive."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARK = "HARNESS_TEST_RAY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked(mark: str) -> list[int]:
    """Live processes whose environment holds MARK=mark (zombies excepted)."""
    needle = f"{MARK}={mark}".encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().decode(errors="replace").rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != "Z" and int(name) != os.getpid():
            out.append(int(name))
    return out


class Cluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 1) -> None:
        self.mark = secrets.token_hex(6)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths have a length limit
        os.makedirs(os.path.join(self.temp, "crash"))
        ray_bin = str(Path(sys.executable).with_name("ray"))
        tests = str(Path(__file__).resolve().parent)  # the replicas import the scripted answers of tests/ray_answers.py
        self.env = {**os.environ, MARK: self.mark, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])),
                    "RAY_TEST_CRASH_DIR": os.path.join(self.temp, "crash"), "RAY_DISABLE_USAGE_STATS": "1"}
        common = ["--num-cpus", str(cpus_per_node), "--disable-usage-stats"]
        try:
            self._ray([ray_bin, "start", "--head", "--port", str(self.port), "--temp-dir", self.temp,
                       "--include-dashboard", "false", *common])
            for _ in range(nodes - 1):
                self._ray([ray_bin, "start", "--address", self.address, *common])
            self._wait_nodes(nodes)
        except BaseException:
            self.stop()
            raise

    def _ray(self, cmd: list[str]) -> None:
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if res.returncode:
            raise RuntimeError(f"{' '.join(cmd[1:3])} failed: {res.stderr[-2000:]}")

    def _wait_nodes(self, n: int, timeout: float = 60) -> None:
        code = ("import ray; ray.init(address=%r, log_to_driver=False); "
                "print(sum(1 for x in ray.nodes() if x['Alive']))") % self.address
        end = time.time() + timeout
        while time.time() < end:
            res = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=60)
            if res.stdout.strip().isdigit() and int(res.stdout.strip()) >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"the cluster did not show {n} nodes")

    def leftovers(self) -> list[int]:
        return marked(self.mark)

    def stop(self) -> list[int]:
        """SIGTERM, then SIGKILL, every process of this cluster; returns those still alive after 10 s."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in marked(self.mark):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            end = time.time() + 5
            while time.time() < end and marked(self.mark):
                time.sleep(0.2)
        import shutil

        shutil.rmtree(self.temp, ignore_errors=True)
        return marked(self.mark)
