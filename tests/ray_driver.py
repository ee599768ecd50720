"""The driver of tests/test_ray.py's scripted runs, in a process of its own, started with the test cluster's
environment (cluster.env: RAY_AUTH_MODE=token, RAY_AUTH_TOKEN, PYTHONPATH=tests/).

Why a process: Ray reads its token settings once, when it is first imported. In a whole-suite run an earlier
test has imported vLLM, which imports Ray, before the cluster's token exists; a driver inside pytest then
fails to connect ("InvalidAuthToken"). Here the token is in the environment before anything imports Ray.

    python tests/ray_driver.py '{"address": ..., "tasks": [...], "strategies": [...], "limit": 8,
                                 "chunk_size": 4, "make": "make", "out": "/tmp/.../r"}'

Runs harness.run on RayBackend(None, replicas=2, address=..., make=ray_answers.<make>); exit 0 when the run
completes; on BackendError prints its one line (with the resume command) as the last line of stderr, exit 3.
The run folder (journal.jsonl, predictions.parquet, run.json) is what the tests read."""
from __future__ import annotations

import json
import sys

import ray_answers

import harness
from harness.backends.ray import RayBackend
from harness.errors import BackendError


def main(argv: list[str]) -> int:
    args = json.loads(argv[1])
    backend = RayBackend(None, replicas=2, address=args["address"], make=getattr(ray_answers, args["make"]))
    message = None
    try:
        harness.run(args["tasks"], args["strategies"], backend=backend, limit=args["limit"], out=args["out"],
                    progress=False, cache=False, chunk_size=args["chunk_size"])
    except BackendError as err:
        message = err.one_line()
    finally:
        backend.close()
    if message is not None:
        print(message, file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
