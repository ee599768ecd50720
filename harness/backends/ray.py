"""The Ray backend: a run's chunks spread over N Ray actors, each holding one offline vLLM engine.

    harness run --backend ray --replicas 2 --ray-address local ...     # a local cluster of its own
    harness run --backend ray --replicas 8 --ray-address auto ...      # the cluster `ray start` runs here

Each replica is an actor (`_Replica`) that builds a `VLLMBackend` with the run's engine options, so a
replica answers exactly as the offline backend does; the driver (the harness) sends each chunk as one
actor call and the runner journals each chunk as it comes back (`generate_chunks`), so resume, the request
cache, unit identity, latency measures and prices are the offline path's. The identity is the offline
engine's: an offline run's cache answers a Ray run of the same model and engine options, and back.

Routing (`Router`): a chunk's prefix key is the most common shared prompt prefix of its requests (the
turns before the last one: system message and few-shot exemplars; the plain prompt before its last blank
line). A key goes to the replica it went to before, so that replica's prefix cache holds it, unless that
replica is full (`DEPTH` chunks queued) or more than a chunk behind the least loaded one: then the key
moves (its prefix is computed once more, there). Self-consistency's k samples are one request (n = k)
and never split. docs/scale-out.md says what this gains.

Faults: an actor whose engine dies (its engine core killed, or any exception out of `generate`, which by
the contract never raises for one bad row) ends its own process; Ray restarts it once (`MAX_RESTARTS`)
with a fresh engine, and the driver sends the lost chunk again to a live replica (at most `MAX_ATTEMPTS`
times). The journal records where every chunk ran (`w`: replica, node, attempt). With every replica gone
the run stops with the resume command (BackendError). Signals: `close()` kills this run's actors
(named `harness-<run>-<i>` in namespace `harness`, never another run's) and stops a cluster it started.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence

from ..errors import BackendError, ConfigError, EngineStartError, missing_extra
from ..records import Completion, Request
from .base import BackendBase, ChunkResult
from .routing import Router, chunk_key
from .models import resolve_model

NAMESPACE = "harness"
MAX_RESTARTS = 1  # Ray restarts a dead replica once (a fresh engine); a second death removes it
MAX_ATTEMPTS = 3  # a chunk is sent at most this many times (a chunk that kills every engine is not retried forever)
CHUNK = 256  # requests per chunk (the offline default is 512): more chunks to spread, less lost with a replica
START_TIMEOUT_S = 600
POLL_S = 0.5  # ray.wait's timeout: a signal is handled within this


# --------------------------------------------------------------------------- the replica (runs in a Ray worker)

class _Replica:
    """One offline engine in a Ray actor. `generate` returns (completions, seconds, where)."""

    def __init__(self, model: str | None, engine_options: dict, index: int, bind: str | None, quiet: bool,
                 make: Any = None) -> None:
        from .vllm import VLLMBackend

        if bind is not None:  # the CPU engine binds its threads to these cores (two replicas: two cores)
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
        self.index = index
        self.backend = (make or VLLMBackend)(model, **engine_options)
        if quiet:
            self.backend.quiet()
        import ray

        ctx = ray.get_runtime_context()
        self.where = {"replica": index, "node": ctx.get_node_id(), "pid": os.getpid(),
                      "restarted": bool(ctx.was_current_actor_reconstructed)}

    def start(self) -> dict:
        import threading

        self.backend.start()
        engine = self.engine_pids()
        if engine:  # vLLM 0.32's sync client waits forever once its engine core is gone: watch it here
            threading.Thread(target=_exit_when_gone, args=(engine,), daemon=True).start()
        return {**self.where, "engine_pids": sorted(engine)}

    def engine_pids(self) -> dict[int, int]:
        """{pid: start time} of this replica's engine processes (VLLM::EngineCore, VLLM::Worker)."""
        from ..system.procs import cmdline, process_tree

        return {pid: t for pid, t in process_tree().items() if cmdline(pid).startswith("VLLM")}

    def generate(self, requests: Sequence[Request]) -> tuple[list[Completion], float, dict]:
        t0 = time.perf_counter()
        try:
            completions = self.backend.generate(requests)
        except BaseException:  # the engine is broken (generate never raises for one bad row): a fresh process
            os._exit(1)  # Ray restarts this actor (max_restarts) and the driver sends the chunk again
        return completions, time.perf_counter() - t0, self.where

    def stats(self) -> dict:
        return self.backend.stats()

    def reset_prefix_cache(self) -> bool:
        return self.backend.reset_prefix_cache()


# --------------------------------------------------------------------------- the backend (the driver)

class RayBackend(BackendBase):
    """N replicas of the offline engine on a Ray cluster; see the module docstring."""

    name = "ray"
    preferred_chunk_size = CHUNK

    def __init__(self, model: str | None = None, *, replicas: int = 1, address: str = "local",
                 replica_cpus: float = 1, replica_gpus: float | None = None, make: Any = None,
                 routing: bool = True, **engine_options: Any) -> None:
        from .vllm import VLLMBackend

        if replicas < 1:
            raise ConfigError(f"--replicas {replicas}", field="--replicas", fix="give --replicas 1 or more")
        self.model = model
        self.model_path, self.model_name = resolve_model(model)
        self.local = VLLMBackend(model, **engine_options)  # never started: the settings and identity the replicas share
        self.engine_options = {**engine_options, "dtype": self.local.engine_settings()["dtype"]}  # the driver's choice, everywhere
        self.replicas, self.address = replicas, address
        self.replica_cpus, self.replica_gpus = replica_cpus, replica_gpus
        self.run_tag = secrets.token_hex(4)
        self.actors: list[Any] = []
        self.started_cluster = False
        self.connected = False  # this backend called ray.init (and close() disconnects)
        self.placement: list[dict] = []
        self.live: set[int] = set(range(replicas))  # replicas taking chunks (not dead, not being restarted)
        self.pings: dict[Any, int] = {}  # a restarting replica's start() call: live again when its engine is
        self.retries: list[dict] = []
        self.use_tqdm = True
        self.routing = routing  # False: every chunk to the least loaded replica (the bench's baseline)
        self.make = make  # what each replica builds: VLLMBackend; a picklable `(model, **options) -> backend` in tests

    @classmethod
    def from_cli(cls, args: Any, *, model: str | None, engine_options: dict[str, Any]) -> "RayBackend":
        return cls(model, replicas=args.replicas or 1, address=args.ray_address or "local",
                   replica_cpus=args.replica_cpus or 1, replica_gpus=args.replica_gpus, **engine_options)

    def quiet(self) -> None:
        self.use_tqdm = False

    def identity(self) -> str:
        return self.local.identity()  # the offline engine's: same model, same options, same answers

    def engine_settings(self) -> dict[str, Any]:
        return {**self.local.engine_settings(), "backend": "ray",
                "ray": {"replicas": self.replicas, "address": self.address, "replica_cpus": self.replica_cpus,
                        "replica_gpus": self.replica_gpus, "max_restarts": MAX_RESTARTS,
                        "max_attempts": MAX_ATTEMPTS, "placement": self.placement, "retries": self.retries}}

    # ---- lifecycle
    def start(self) -> None:
        if self.actors:
            return
        ray = _import_ray()
        self._connect(ray)
        gpus = self.replica_gpus
        if gpus is None:  # a GPU cluster: tensor x pipeline GPUs per replica
            has_gpu = ray.cluster_resources().get("GPU", 0) > 0
            gpus = (self.engine_options.get("tensor_parallel_size", 1)
                    * self.engine_options.get("pipeline_parallel_size", 1)) if has_gpu else 0
        cls = ray.remote(_Replica)
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        for i in range(self.replicas):
            self.actors.append(cls.options(
                num_cpus=self.replica_cpus, num_gpus=gpus, max_restarts=MAX_RESTARTS, max_task_retries=0,
                namespace=NAMESPACE, name=f"harness-{self.run_tag}-{i}").remote(
                self.model, self.engine_options, i, _bind(cores, i, self.replica_cpus) if not gpus else None,
                not self.use_tqdm, self.make))
        refs = [a.start.remote() for a in self.actors]
        try:
            self.placement = _get(ray, refs, START_TIMEOUT_S, "start")
        except BackendError as exc:
            raise EngineStartError(f"a Ray replica's engine failed to start: {exc.message}",
                                   where=self.address, fix="read the replica's log above; check the cluster's "
                                   "CPUs / GPUs (`ray status`) and the engine options") from None

    def _connect(self, ray: Any) -> None:
        if ray.is_initialized():  # the caller's connection (a notebook's ray.init): used, never shut down
            return
        self.connected = True
        kwargs: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": self.use_tqdm,
                                  "include_dashboard": False, "configure_logging": False}
        if self.address == "local":
            need = self.replicas * self.replica_cpus
            kwargs.update(address="local", num_cpus=max(int(need + 0.999), os.cpu_count() or 1),
                          _temp_dir=f"/tmp/ray-harness-{os.getpid()}")
            self.started_cluster = True
        else:
            check_address(self.address)
            kwargs["address"] = self.address
        with _signals_kept():  # ray.init installs its own SIGTERM handler; the harness's stays
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                self.started_cluster = self.connected = False
                raise ConfigError(f"cannot reach the Ray cluster at '{self.address}': {_first_line(exc)}",
                                  field="--ray-address",
                                  fix="start one with `ray start --head` (then --ray-address auto), give its "
                                      "HOST:PORT, or use --ray-address local; a cluster with token authentication "
                                      "needs its token here too (RAY_AUTH_TOKEN or ~/.ray/auth_token)") from None

    def close(self) -> None:
        """Kill this run's actors (their engines die with them: each replica's watchdog), and stop the local
        cluster this backend started. Another run's actors on a shared cluster are not touched."""
        if not self.actors and not self.connected:
            return
        ray = _import_ray()
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self.actors = []
        if self.connected and ray.is_initialized():
            ray.shutdown()  # a local cluster it started stops; a shared one keeps running without this driver
        self.connected = False
        if self.started_cluster:
            import shutil

            shutil.rmtree(f"/tmp/ray-harness-{os.getpid()}", ignore_errors=True)
            self.started_cluster = False

    # ---- the protocol
    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return next(iter(self.generate_chunks([requests]))).completions

    def generate_chunks(self, chunks: Iterable[Sequence[Request]]) -> Iterator[ChunkResult]:
        """Up to DEPTH chunks queued per replica; each chunk is yielded as its replica answers it."""
        self.start()
        ray = _import_ray()
        source = iter(enumerate(chunks))
        todo: list[tuple[int, Sequence[Request], int]] = []  # chunks sent again after their replica died
        router = Router(len(self.actors))
        router.live = self.live  # a replica being restarted stays out across calls (the latency measures after)
        inflight: dict[Any, tuple[int, Sequence[Request], int, int]] = {}
        pings = self.pings
        while True:
            while True:  # fill every free slot
                item = todo.pop(0) if todo else next(source, None)
                if item is None:
                    break
                n, reqs, attempt = item if len(item) == 3 else (*item, 1)
                r = router.pick(chunk_key(reqs) if self.routing else None, len(reqs))
                if r is None:
                    todo.insert(0, (n, reqs, attempt))
                    break
                inflight[self.actors[r].generate.remote(list(reqs))] = (n, reqs, r, attempt)
            if not inflight and not todo:
                return
            if not inflight and not pings:
                raise BackendError("every Ray replica is gone (each engine died twice)",
                                   fix="check the replicas' logs and the cluster (`ray status`)")
            done, _ = ray.wait(list(inflight) + list(pings), num_returns=1, timeout=POLL_S)
            for ref in done:
                if ref in pings:
                    self._revived(ray, ref, pings, router)
                    continue
                n, reqs, r, attempt = inflight.pop(ref)
                router.done(r, len(reqs))
                try:
                    completions, seconds, where = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                    todo.insert(0, self._lost(n, reqs, r, attempt, exc, router, pings))
                    continue
                except ray.exceptions.RayError as exc:
                    raise BackendError(f"Ray replica {r} failed: {_first_line(exc)}") from None
                yield ChunkResult(n, completions, seconds, {**where, "attempt": attempt})

    def _lost(self, n, reqs, r, attempt, exc, router, pings) -> tuple:
        """A replica died with chunk n: take it out of the routing until Ray has restarted it."""
        if r in router.live:
            router.live.discard(r)
            pings[self.actors[r].start.remote()] = r
        self.retries.append({"chunk": n, "replica": r, "attempt": attempt, "error": _first_line(exc)[:200]})
        if attempt >= MAX_ATTEMPTS:
            raise BackendError(f"chunk {n} was lost {attempt} times with its replica ({_first_line(exc)})")
        return (n, reqs, attempt + 1)

    def _revived(self, ray, ref, pings, router) -> None:
        r = pings.pop(ref)
        try:
            info = ray.get(ref)
        except ray.exceptions.RayError:
            return  # gone for good (its restarts spent)
        router.live.add(r)
        self.placement.append(info)

    def stats(self) -> dict[str, float]:
        """The replicas' counters summed (the KV-cache usage gauge: their mean)."""
        if not self.actors:
            return {}
        ray = _import_ray()
        try:
            each = _get(ray, [a.stats.remote() for a in self._live_actors()], 60, "stats")
        except BackendError:
            return {}
        out: dict[str, float] = {}
        for s in each:
            for k, v in s.items():
                out[k] = out.get(k, 0) + v
        if "kv_cache_usage" in out:
            out["kv_cache_usage"] /= len(each)
        return out

    def reset_prefix_cache(self) -> bool:
        if not self.actors:
            return False
        ray = _import_ray()
        # a replica being restarted is left out: its new engine starts with an empty cache
        return all(_get(ray, [a.reset_prefix_cache.remote() for a in self._live_actors()], 60, "reset"))

    def _live_actors(self) -> list[Any]:
        return [a for i, a in enumerate(self.actors) if i in self.live]

    supports_prefix_cache_reset = True


# --------------------------------------------------------------------------- helpers

def _exit_when_gone(engine: dict[int, int]) -> None:
    """In a replica: end the actor's process (Ray restarts it) as soon as one of its engine processes is gone.
    A killed engine core leaves vLLM 0.32's LLM.generate waiting forever (its output thread stops without a
    word), so the replica cannot learn it from the call it is in."""
    from ..system.procs import process_tree

    while True:
        time.sleep(0.5)
        now = process_tree()
        if any(now.get(pid) != started for pid, started in engine.items()):
            os._exit(1)

def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise missing_extra("ray", "ray") from exc
    return ray


def check_address(address: str) -> None:
    """A HOST:PORT that nothing answers on is refused in one line, before Ray waits a minute on it."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"bad address '{address}'", field="--ray-address",
                          fix="give HOST:PORT of the head node (ray start --head prints it), auto or local")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"nothing answers at {address} ({exc.strerror or exc})", field="--ray-address",
                          fix="start the head with `ray start --head --port PORT`, or use --ray-address local") from None


def _bind(cores: list[int], index: int, cpus: float) -> str | None:
    """The cores replica `index` binds its CPU engine to: `cpus` of this machine's cores, replica by replica
    (wrapping). None without a core list."""
    if not cores:
        return None
    k = max(1, int(cpus))
    start = (index * k) % len(cores)
    picked = [cores[(start + j) % len(cores)] for j in range(k)]
    return ",".join(map(str, picked))


def _get(ray: Any, refs: list, timeout: float, what: str) -> list:
    try:
        return ray.get(refs, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise BackendError(f"the replicas did not answer '{what}' within {timeout:.0f} s") from None
    except ray.exceptions.RayError as exc:
        raise BackendError(_first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


@contextmanager
def _signals_kept():
    """Around ray.init: its own SIGTERM handler (`sys.exit(signum)`) is active while it runs, so a SIGTERM then
    ends in SystemExit(15); it is handed to the handler that was there before (the harness's: exit 143 and the
    resume line, as for any backend), and every handler is put back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    except SystemExit as exc:
        if exc.code == signal.SIGTERM and callable(saved[signal.SIGTERM]):
            saved[signal.SIGTERM](signal.SIGTERM, None)
        raise
    finally:
        for s, h in saved.items():
            if h is not None:
                try:
                    signal.signal(s, h)
                except ValueError:  # not the main thread
                    pass
