"""RAY: `--backend ray` on a local Ray cluster against the offline engine, on the same requests and chunks.

RAY1 2 replicas x 1 CPU vs 1 replica x 2 CPUs; RAY2 2 replicas vs 1 (1 CPU each); RAY3 the Ray path's overhead
at 1 replica against the offline engine (target <= 1.10); RAY4 prefix routing on vs off at 2 replicas (prompt
tokens computed, wall). Engine start is never timed: each backend is started, then its chunks are timed.
This machine has 2 cores: the speed-ups are information, not targets (docs/scale-out.md)."""
from __future__ import annotations

from typing import Any, Callable

from .common import Row, ratio, requests_of, stats_delta, timed

TASKS = ("larger_number", "country_capital")
STRATS = ("zero_shot", "few_shot:k=3", "few_shot:k=5", "self_consistency:k=3")
CHUNK = 8  # requests per chunk: enough chunks to spread over replicas


def _chunks(reqs: list, size: int) -> list[list]:
    return [reqs[i:i + size] for i in range(0, len(reqs), size)]


def _measure(name: str, make: Callable[[], Any], chunks: list[list], log) -> dict:
    backend = make()
    try:
        backend.quiet()
        backend.start()
        before = backend.stats()
        wall, results = timed(lambda: list(backend.generate_chunks(chunks)))
        delta = stats_delta(before, backend.stats())
        texts = {r.index: [c.texts for c in r.completions] for r in results}
    finally:
        backend.close()
    log(f"[bench] RAY {name}: {wall:.2f} s")
    return {"wall": wall, "computed": delta.get("prompt_tokens_computed"), "texts": texts}


def run(*, quick: bool, log=print) -> list[Row]:
    from harness.backends.ray import RayBackend
    from harness.backends.vllm import VLLMBackend

    reqs = requests_of(list(TASKS), list(STRATS), limit=4 if quick else 8)
    chunks = _chunks(reqs, CHUNK)
    log(f"[bench] RAY: {len(reqs)} requests in {len(chunks)} chunks")
    offline = _measure("offline engine", lambda: VLLMBackend(), chunks, log)
    one = _measure("1 replica x 1 CPU", lambda: RayBackend(replicas=1, replica_cpus=1), chunks, log)
    one_wide = _measure("1 replica x 2 CPUs", lambda: RayBackend(replicas=1, replica_cpus=2), chunks, log)
    two = _measure("2 replicas x 1 CPU", lambda: RayBackend(replicas=2, replica_cpus=1), chunks, log)
    two_rr = _measure("2 replicas x 1 CPU, no routing", lambda: RayBackend(replicas=2, replica_cpus=1, routing=False),
                      chunks, log)
    same = sum(offline["texts"][i] == one["texts"][i] for i in offline["texts"])
    d = {"requests": len(reqs), "chunks": len(chunks), "offline_s": offline["wall"], "ray1x1_s": one["wall"],
         "ray1x2_s": one_wide["wall"], "ray2x1_s": two["wall"], "ray2x1_no_routing_s": two_rr["wall"]}
    return [
        Row("RAY1", "2 replicas x 1 CPU / 1 replica x 2 CPUs (wall)", ratio(two["wall"], one_wide["wall"]), None, d),
        Row("RAY2", "2 replicas / 1 replica, 1 CPU each (wall)", ratio(two["wall"], one["wall"]), None, d),
        Row("RAY3", "Ray path at 1 replica / offline engine (wall)", ratio(one["wall"], offline["wall"]), "<= 1.10",
            {**d, "chunks_with_equal_texts": same}),
        Row("RAY4", "prefix routing on / off at 2 replicas: prompt tokens computed",
            ratio(two["computed"], two_rr["computed"]), None,
            {**d, "computed_on": two["computed"], "computed_off": two_rr["computed"],
             "wall_on_off": ratio(two["wall"], two_rr["wall"])}),
    ]
