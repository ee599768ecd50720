"""Decoding on the real engine: P4 (guided / free time per token), SPEC (n-gram speculative decoding)
and CTX (the context-length sweep). See bench/engine.py."""
from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from .common import (Clock, Row, Settings, Timed, abba, clock_ratio, clocked, fresh_prefix_cache, ratio,
                     requests_of, stats_delta, timed, wall_text)

REGEX_ANSWER = r"The answer is -?[0-9]{1,6}\."               # the free answer's own form, as a regex


def _regex_task(s: Settings) -> Any:
    from harness.task.tasks import load_task

    root = Path(__file__).resolve().parent.parent
    src = (root / "tasks" / "multistep_arithmetic.yaml").read_text(encoding="utf-8")
    src = src.replace("name: multistep_arithmetic", "name: arith_regex_answer")
    src = src.replace("output_type: {regex: '-?[0-9]{1,6}'}", f"output_type: {{regex: '{REGEX_ANSWER}'}}")
    path = s.folder / "arith_regex_answer.yaml"
    path.write_text(src, encoding="utf-8")
    return load_task(str(path))


def p4(s: Settings, backend: Any, *, tag: str = "P4") -> list[Row]:
    """Guided / free on the same items. The value is decode time per token (per request: from its
    first to its last token, over tokens - 1; the median over requests, best of the repeats): the
    prefill is the same work either way, and with output lengths that differ (the free answer
    rambles on after "The answer is N.") wall / generated tokens mostly measures the prefill share."""
    from harness.scoring.extract import extract_json

    limit = 8 if s.quick else 40
    rows = []
    for label, task in (("json", "person_json"), ("regex", _regex_task(s))):
        guided = requests_of([task], ["zero_shot:guided=true"], limit=limit)
        free = requests_of([task], ["zero_shot"], limit=limit)
        backend.generate(guided[:2])  # warm-up: the grammar is compiled once
        res: dict[str, list[dict]] = {"guided": [], "free": []}

        def measure(name: str, reqs: list[Any]) -> Clock:
            fresh_prefix_cache(backend)
            before = backend.stats()
            clock, comps = clocked(lambda: backend.generate(reqs))
            toks = stats_delta(before, backend.stats()).get("generation_tokens", 0)
            decode = [(c.latency_s - c.ttft_s) / (sum(c.completion_tokens) - 1) for c in comps
                      if c.ttft_s is not None and c.completion_tokens and sum(c.completion_tokens) > 1]
            res[name].append({"wall_s": clock.wall, "gen_tokens": toks,
                              "decode_s_per_token_median": statistics.median(decode) if decode else None,
                              "texts": [c.texts[0] if c.texts else "" for c in comps]})
            return clock.per(toks)

        tg, tf = abba(lambda: measure("guided", guided), lambda: measure("free", free), reps=s.reps)
        wall, cpu, detail = clock_ratio(tg, tf)
        texts_g, texts_f = res["guided"][-1]["texts"], res["free"][-1]["texts"]
        if label == "json":
            valid_g = sum(extract_json(t)[1] for t in texts_g)
            valid_f = sum(extract_json(t)[1] for t in texts_f)
        else:
            valid_g = sum(bool(re.fullmatch(REGEX_ANSWER, t.strip())) for t in texts_g)
            valid_f = sum(bool(re.fullmatch(REGEX_ANSWER, t.strip())) for t in texts_f)
        dec = ratio(min(x["decode_s_per_token_median"] or 1e9 for x in res["guided"]),
                    min(x["decode_s_per_token_median"] or 1e9 for x in res["free"]))
        for side in res.values():
            for x in side:
                x.pop("texts")
        toks_g, toks_f = res["guided"][-1]["gen_tokens"], res["free"][-1]["gen_tokens"]
        rows.append(Row(f"{tag}-{label}", f"guided / free, decode time per output token, {label} ({limit} "
                        f"items, best of {s.reps})", dec, "<= 1.05",
                        detail={**detail, "guided": res["guided"], "free": res["free"], "decode_ratio": dec,
                                "valid_guided": valid_g / len(texts_g), "valid_free": valid_f / len(texts_f)},
                        note=f"wall/generated token {wall:.3f} (CPU {cpu:.3f}); "
                             f"valid output guided {valid_g}/{len(texts_g)}, free {valid_f}/{len(texts_f)}; "
                             f"tokens {toks_g:.0f} vs {toks_f:.0f}"))
    return rows


def spec_run(s: Settings, backend: Any) -> Timed:
    """The greedy person_json items `reps` times: clocks, the last outputs and engine counters."""
    reqs = requests_of(["person_json"], ["zero_shot"], limit=8 if s.quick else 40)
    backend.generate(reqs[:2])  # warm-up
    clocks, texts, d = [], None, {}
    for _ in range(s.reps):
        fresh_prefix_cache(backend)
        before = backend.stats()
        clock, comps = clocked(lambda: backend.generate(reqs))
        clocks.append(clock)
        texts = [c.texts[0] if c.texts else None for c in comps]
        d = stats_delta(before, backend.stats())
    return Timed(clocks, texts=texts, stats=d)


def spec_rows(s: Settings, on: Timed, off: Timed) -> list[Row]:
    same = sum(a == b for a, b in zip(on.texts, off.texts)) / len(off.texts)
    d = on.stats
    acc = ratio(d.get("spec_decode_accepted_tokens"), d.get("spec_decode_draft_tokens"))
    wall, cpu, detail = clock_ratio(on.clocks, off.clocks)
    return [Row("SPEC", f"n-gram speculative (k=3) / off, wall, greedy person_json (best of {s.reps})",
                wall, None, detail={**detail, "identical": same, "acceptance": acc, "spec_stats": d},
                note=f"{wall_text(on.clocks)} vs {wall_text(off.clocks)}; CPU ratio {cpu:.3f}; "
                     f"draft tokens accepted {acc if acc is None else round(acc, 3)}"),
            Row("SPEC-same", "greedy outputs identical with speculative decoding (fraction)", same, ">= 1.0")]


def ctx(s: Settings, backend: Any) -> list[Row]:
    """Each needle length alone (the CLI sweep sends all lengths in one batch, where every request
    also waits for the others): accuracy, latency and wall time relative to the shortest."""
    import harness

    rows, base = [], None
    for n in (256, 512, 1024, 1800):
        fresh_prefix_cache(backend)
        t, df = timed(lambda: harness.run([f"needle_{n}"], ["zero_shot"], backend=backend, limit=20,
                                          out=s.out("ctx"), progress=False, write_report=False, cache=False,
                                          latency_probe=0))
        base = base or t
        acc = float(df["correct"].fillna(False).astype(bool).mean())
        info = {"wall_s": t, "accuracy": acc, "prompt_tokens_mean": float(df["prompt_tokens"].mean()),
                "latency_median_s": float(df["batch_latency_s"].median()),
                "ttft_median_s": float(df["batch_ttft_s"].median()),
                "completion_tokens_mean": float(df["completion_tokens"].mean())}
        rows.append(Row(f"CTX-{n}", f"needle_{n} zero_shot, 20 items alone: wall / wall at 256", t / base, None,
                        detail=info, note=f"acc {acc:.2f}; prompt {info['prompt_tokens_mean']:.0f} tok; "
                                          f"median TTFT {info['ttft_median_s']:.2f} s, latency "
                                          f"{info['latency_median_s']:.2f} s; wall {t:.1f} s"))
    return rows
