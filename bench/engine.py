"""Benchmarks on the real vLLM engine (the bundled SmolLM2-135M-Instruct, CPU build).

P1      harness.run wall time / raw `LLM.chat` on the same rendered prompts and settings, same engine
P2      self-consistency k=8: prompt tokens computed / (examples x prompt length), short and long prompt;
        n=k vs k cloned n=1 requests (issue 3): prompt tokens computed and wall time
P3      5-shot: prefix-cache hit rate with caching on; wall time caching on / off (two engines);
        the shared exemplar prefix is checked to be byte-identical across examples
P4      guided / free time per output token on the same items (JSON schema; regex), with the default
        structured-output backend (xgrammar) and, in the full run, with guidance (llguidance)
SPEC    n-gram speculative decoding / off on the same greedy items; identical outputs
B32     block_size=32 instead of the CPU default 128: P2 and P3 again (prefix reuse is per whole block)
COMPILE compiled (torch.compile) / eager on the P1 prompts
CTX     the context-length sweep (tasks needle_256 ... needle_1800), one length per engine call
PROBE   default suite wall with the latency / throughput measures on / off (bench/measures.py)

The harness runs of P1, P3 and CTX turn the latency probe off (they measure the batch path).

Every measurement that could reuse an earlier one's KV blocks starts from an empty prefix cache
(`LLM.reset_prefix_cache()`). Timed pairs alternate (a b, b a, ...) and keep the best of each side.
"""
from __future__ import annotations

import os
import re
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from .common import (Clock, Row, abba, best, clock_ratio, clocked, engine, fresh_prefix_cache, ratio,
                     requests_of, stats_delta, timed, vllm_params)

P1_TASKS = ("coin_flip", "multistep_arithmetic")
P1_STRATEGIES = ("zero_shot", "few_shot:k=3")
SC_SHORT = "self_consistency:k=8,base=zero_shot"            # coin_flip: ~86 prompt tokens (< one block)
SC_LONG = "self_consistency:k=8,base=zero_shot,shots=16"    # coin_flip: ~714 prompt tokens
P3_RUNS = (("multistep_arithmetic", "few_shot:k=5"),         # the 5-shot run of the brief (~200 tokens)
           ("last_letter_concat", "cot:k=5"))                # a longer 5-shot prompt (~420 tokens)
REGEX_ANSWER = r"The answer is -?[0-9]{1,6}\."               # the free answer's own form, as a regex


def _wall(c: Sequence[Clock]) -> str:
    return f"{best(c).wall:.2f} s"


class EngineBench:
    """Holds the settings and the results one engine hands to the next (baselines, outputs)."""

    def __init__(self, *, quick: bool, folder: Path) -> None:
        self.quick = quick
        self.reps = 2 if quick else 3
        self.folder = folder
        self.memo: dict[str, Any] = {}
        self._n = 0

    def out(self, tag: str) -> Path:
        self._n += 1
        return self.folder / f"{tag}-{self._n}"

    # ------------------------------------------------------------------ P1
    def p1(self, backend: Any) -> list[Row]:
        import harness
        from harness.backends.vllm import to_chat_messages

        limit = 10 if self.quick else 40
        reqs = requests_of(P1_TASKS, P1_STRATEGIES, limit=limit)
        convs = [to_chat_messages(r) for r in reqs]
        params = [vllm_params(r) for r in reqs]
        backend.llm.chat(convs[:8], params[:8], use_tqdm=False)  # warm-up
        raw_texts: dict[str, str] = {}
        frames: list[Any] = []

        def raw() -> Clock:
            fresh_prefix_cache(backend)
            clock, outs = clocked(lambda: backend.llm.chat(convs, params, use_tqdm=False))
            raw_texts.update({r.key: o.outputs[0].text for r, o in zip(reqs, outs)})
            return clock

        def via_harness() -> Clock:
            fresh_prefix_cache(backend)
            clock, df = clocked(lambda: harness.run(list(P1_TASKS), list(P1_STRATEGIES), backend=backend,
                                                    limit=limit, out=self.out("p1"), progress=False,
                                                    write_report=False, cache=False, latency_probe=0))
            frames.append(df)
            return clock

        th, tr = abba(via_harness, raw, reps=self.reps)
        wall, cpu, detail = clock_ratio(th, tr)
        df = frames[-1]
        got = {f"{t}|{s}|{e}": o for t, s, e, o in zip(df["task"], df["strategy"], df["example_id"], df["output"])}
        same = sum(got.get(k) == v for k, v in raw_texts.items()) / len(raw_texts)
        self.memo.update(p1_raw=tr, p1_raw_texts=raw_texts, p1_convs=convs, p1_params=params, p1_reqs=reqs)
        rows = [Row("P1", f"harness.run / raw LLM.chat, wall, {len(reqs)} requests (best of {self.reps}, "
                    "alternating)", wall, "<= 1.05",
                    detail={**detail, "requests": len(reqs), "identical_outputs": same},
                    note=f"harness {_wall(th)}, raw {_wall(tr)}; CPU ratio {cpu:.3f}; identical outputs {same:.0%}")]
        # the same run as the CLI does it by default: with the HTML/Markdown report
        fresh_prefix_cache(backend)
        t, _ = timed(lambda: harness.run(list(P1_TASKS), list(P1_STRATEGIES), backend=backend, limit=limit,
                                         out=self.out("p1r"), progress=False, write_report=True, cache=False, latency_probe=0))
        rows.append(Row("P1r", "harness.run with write_report=True / raw LLM.chat, wall", ratio(t, best(tr).wall),
                        None, detail={"harness_report_s": t}, note=f"{t:.2f} s incl. the report with plots"))
        return rows

    # ------------------------------------------------------------------ P2
    @staticmethod
    def _clones(req: Any) -> list[Any]:
        """k separate n=1 requests with different seeds: what a harness without n=k would send."""
        base = req.sampling.seed or 0
        return [replace(req, key=f"{req.key}#{i}", sampling=replace(req.sampling, n=1, seed=base + i))
                for i in range(req.sampling.n)]

    @staticmethod
    def _computed(backend: Any, groups: Sequence[Sequence[Any]]) -> dict[str, float]:
        """Prompt tokens per group, each group from an empty prefix cache (no sharing between groups)."""
        tot = {"computed": 0.0, "prompt_tokens_counter": 0.0, "prompt_len": 0.0, "gen_tokens": 0.0}
        for reqs in groups:
            fresh_prefix_cache(backend)
            before = backend.stats()
            comps = backend.generate(list(reqs))
            d = stats_delta(before, backend.stats())
            tot["computed"] += d.get("prompt_tokens_computed", 0)
            tot["prompt_tokens_counter"] += d.get("prompt_tokens", 0)
            tot["gen_tokens"] += d.get("generation_tokens", 0)
            tot["prompt_len"] += comps[0].prompt_tokens or 0
        return tot

    def p2(self, backend: Any, *, tag: str = "P2") -> list[Row]:
        examples = 2 if self.quick else 8
        rows = []
        for label, strategy in (("short", SC_SHORT), ("long", SC_LONG)):
            reqs = requests_of(["coin_flip"], [strategy], limit=examples)
            k = reqs[0].sampling.n
            nk = self._computed(backend, [[r] for r in reqs])
            one = self._computed(backend, [[replace(r, sampling=replace(r.sampling, n=1))] for r in reqs])
            cl = self._computed(backend, [self._clones(r) for r in reqs])
            plen = nk["prompt_len"] / len(reqs)
            rows.append(Row(f"{tag}-{label}", f"SC k={k}, {label} prompt ({plen:.0f} tok): prompt tokens computed "
                            "/ (examples x prompt length)", nk["computed"] / nk["prompt_len"], "<= 1.1",
                            detail={"n_k": nk, "n_1": one, "clones": cl, "examples": len(reqs)},
                            note=f"n=1: {one['computed'] / one['prompt_len']:.2f}; "
                                 f"k clones: {cl['computed'] / cl['prompt_len']:.2f}"))
            if tag != "P2":
                continue
            rows.append(Row(f"P2-clones-{label}", f"SC k={k}, {label}: prompt tokens computed, k clones / n=k",
                            ratio(cl["computed"], nk["computed"]), None,
                            note=f"{cl['computed']:.0f} vs {nk['computed']:.0f} tokens"))
            clones = [c for r in reqs for c in self._clones(r)]  # batched as the runner sends them
            gen: dict[str, float] = {}
            texts: dict[str, list[str]] = {}

            def run(name: str, batch: list[Any]) -> Clock:
                fresh_prefix_cache(backend)
                before = backend.stats()
                clock, comps = clocked(lambda: backend.generate(batch))
                gen[name] = stats_delta(before, backend.stats()).get("generation_tokens", 0)
                texts[name] = [t for c in comps for t in c.texts]
                return clock

            tn, tc = abba(lambda: run("n_k", reqs), lambda: run("clones", clones), reps=self.reps)
            wall, cpu, detail = clock_ratio(tn, tc)
            same = sum(a == b for a, b in zip(texts["n_k"], texts["clones"])) / len(texts["n_k"])
            rows.append(Row(f"P2-wall-{label}", f"SC k={k}, {label}: wall n=k / k clones ({len(reqs)} examples, "
                            "one batch)", wall, None, detail={**detail, "gen_tokens": gen, "identical_samples": same},
                            note=f"{_wall(tn)} vs {_wall(tc)}; CPU ratio {cpu:.3f}; generated "
                                 f"{gen.get('n_k', 0):.0f} vs {gen.get('clones', 0):.0f} tokens; clone i (seed s+i) "
                                 f"= sample i of n=k for {same:.0%} of samples"))
        return rows

    # ------------------------------------------------------------------ P3
    def p3_prefix_check(self, backend: Any) -> list[Row]:
        """The exemplar block (everything before the item) is byte-identical across examples."""
        from harness.strategies import COT_TRIGGER

        tok = backend.tokenizer
        rows = []
        for task, strategy in P3_RUNS:
            reqs = requests_of([task], [strategy], limit=10 if self.quick else 40)
            trigger = f"\n\n{COT_TRIGGER}"  # cot ends the item with it; the item itself follows the last "\n\n"
            heads = {r.messages[-1].content.removesuffix(trigger).rsplit("\n\n", 1)[0] for r in reqs}
            systems = {tuple((m.role, m.content) for m in r.messages[:-1]) for r in reqs}
            texts = [tok.apply_chat_template([{"role": m.role, "content": m.content} for m in r.messages],
                                             add_generation_prompt=True, tokenize=False) for r in reqs]
            ids = [list(tok.encode(t, add_special_tokens=False)) for t in texts]
            shared = len(os.path.commonprefix(ids))
            mean_len = sum(map(len, ids)) / len(ids)
            identical = len(heads) == 1 and len(systems) == 1 and len(set(texts)) == len(texts)
            rows.append(Row(f"P3-prefix-{task}", f"{task} {strategy}: shared prefix tokens / prompt tokens",
                            shared / mean_len, None,
                            detail={"byte_identical": identical, "shared_tokens": shared, "mean_prompt": mean_len,
                                    "shared_chars": len(os.path.commonprefix(texts))},
                            note=f"exemplar block byte-identical across {len(reqs)} examples: {identical}; "
                                 f"{shared} of {mean_len:.0f} tokens shared"))
        return rows

    def p3_run(self, backend: Any, key: str) -> None:
        """Each 5-shot run `reps` times from an empty prefix cache: the clocks, and the hit rate."""
        import harness

        limit = 10 if self.quick else 40
        for task, strategy in P3_RUNS:
            clocks, rate = [], None
            for _ in range(self.reps):
                fresh_prefix_cache(backend)
                before = backend.stats()
                clock, _ = clocked(lambda: harness.run([task], [strategy], backend=backend, limit=limit,
                                                       out=self.out("p3"), progress=False, write_report=False,
                                                       cache=False, latency_probe=0))
                d = stats_delta(before, backend.stats())
                clocks.append(clock)
                q = d.get("prefix_cache_queries", 0)
                rate = d.get("prefix_cache_hits", 0) / q if q else None
            self.memo[f"p3_{key}_{task}"] = {"clocks": clocks, "hit_rate": rate}

    def p3_rows(self, *, on: str = "on", tag: str = "P3") -> list[Row]:
        rows = []
        for task, strategy in P3_RUNS:
            m_on, m_off = self.memo.get(f"p3_{on}_{task}"), self.memo.get(f"p3_off_{task}")
            if m_on is None:
                continue
            rows.append(Row(f"{tag}-hit-{task}", f"{task} {strategy}: prefix-cache hit rate (hits/queries)",
                            m_on["hit_rate"], ">= 0.8"))
            if m_off is not None:
                wall, cpu, detail = clock_ratio(m_on["clocks"], m_off["clocks"])
                rows.append(Row(f"{tag}-wall-{task}", f"{task} {strategy}: wall caching on / off "
                                f"(best of {self.reps} each)", wall, "<= 0.5", detail=detail,
                                note=f"{_wall(m_on['clocks'])} vs {_wall(m_off['clocks'])}; CPU ratio {cpu:.3f}"))
        return rows

    # ------------------------------------------------------------------ P4
    def _regex_task(self) -> Any:
        from harness.tasks import load_task

        root = Path(__file__).resolve().parent.parent
        src = (root / "tasks" / "multistep_arithmetic.yaml").read_text(encoding="utf-8")
        src = src.replace("name: multistep_arithmetic", "name: arith_regex_answer")
        src = src.replace("output_type: {regex: '-?[0-9]{1,6}'}", f"output_type: {{regex: '{REGEX_ANSWER}'}}")
        path = self.folder / "arith_regex_answer.yaml"
        path.write_text(src, encoding="utf-8")
        return load_task(str(path))

    def p4(self, backend: Any, *, tag: str = "P4") -> list[Row]:
        """Guided / free on the same items. The value is decode time per token (per request: from its
        first to its last token, over tokens - 1; the median over requests, best of the repeats): the
        prefill is the same work either way, and with output lengths that differ (the free answer
        rambles on after "The answer is N.") wall / generated tokens mostly measures the prefill share."""
        from harness.extract import extract_json

        limit = 8 if self.quick else 40
        rows = []
        for label, task in (("json", "person_json"), ("regex", self._regex_task())):
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

            tg, tf = abba(lambda: measure("guided", guided), lambda: measure("free", free), reps=self.reps)
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
                            f"items, best of {self.reps})", dec, "<= 1.05",
                            detail={**detail, "guided": res["guided"], "free": res["free"], "decode_ratio": dec,
                                    "valid_guided": valid_g / len(texts_g), "valid_free": valid_f / len(texts_f)},
                            note=f"wall/generated token {wall:.3f} (CPU {cpu:.3f}); "
                                 f"valid output guided {valid_g}/{len(texts_g)}, free {valid_f}/{len(texts_f)}; "
                                 f"tokens {toks_g:.0f} vs {toks_f:.0f}"))
        return rows

    # ------------------------------------------------------------------ SPEC
    def spec_run(self, backend: Any, key: str) -> None:
        reqs = requests_of(["person_json"], ["zero_shot"], limit=8 if self.quick else 40)
        backend.generate(reqs[:2])  # warm-up
        clocks, texts, d = [], None, {}
        for _ in range(self.reps):
            fresh_prefix_cache(backend)
            before = backend.stats()
            clock, comps = clocked(lambda: backend.generate(reqs))
            clocks.append(clock)
            texts = [c.texts[0] if c.texts else None for c in comps]
            d = stats_delta(before, backend.stats())
        self.memo[f"spec_{key}"] = {"clocks": clocks, "texts": texts, "stats": d}

    def spec_rows(self) -> list[Row]:
        on, off = self.memo.get("spec_on"), self.memo.get("spec_off")
        if not on or not off:
            return []
        same = sum(a == b for a, b in zip(on["texts"], off["texts"])) / len(off["texts"])
        d = on["stats"]
        acc = ratio(d.get("spec_decode_accepted_tokens"), d.get("spec_decode_draft_tokens"))
        wall, cpu, detail = clock_ratio(on["clocks"], off["clocks"])
        return [Row("SPEC", f"n-gram speculative (k=3) / off, wall, greedy person_json (best of {self.reps})",
                    wall, None, detail={**detail, "identical": same, "acceptance": acc, "spec_stats": d},
                    note=f"{_wall(on['clocks'])} vs {_wall(off['clocks'])}; CPU ratio {cpu:.3f}; "
                         f"draft tokens accepted {acc if acc is None else round(acc, 3)}"),
                Row("SPEC-same", "greedy outputs identical with speculative decoding (fraction)", same, ">= 1.0")]

    # ------------------------------------------------------------------ CTX
    def ctx(self, backend: Any) -> list[Row]:
        """Each needle length alone (the CLI sweep sends all lengths in one batch, where every request
        also waits for the others): accuracy, latency and wall time relative to the shortest."""
        import harness

        rows, base = [], None
        for n in (256, 512, 1024, 1800):
            fresh_prefix_cache(backend)
            t, df = timed(lambda: harness.run([f"needle_{n}"], ["zero_shot"], backend=backend, limit=20,
                                              out=self.out("ctx"), progress=False, write_report=False, cache=False, latency_probe=0))
            base = base or t
            acc = float(df["correct"].fillna(False).astype(bool).mean())
            info = {"wall_s": t, "accuracy": acc, "prompt_tokens_mean": float(df["prompt_tokens"].mean()),
                    "latency_median_s": float(df["batch_latency_s"].median()), "ttft_median_s": float(df["batch_ttft_s"].median()),
                    "completion_tokens_mean": float(df["completion_tokens"].mean())}
            rows.append(Row(f"CTX-{n}", f"needle_{n} zero_shot, 20 items alone: wall / wall at 256", t / base, None,
                            detail=info, note=f"acc {acc:.2f}; prompt {info['prompt_tokens_mean']:.0f} tok; "
                                              f"median TTFT {info['ttft_median_s']:.2f} s, latency "
                                              f"{info['latency_median_s']:.2f} s; wall {t:.1f} s"))
        return rows

    # ------------------------------------------------------------------ COMPILE
    def compile_rows(self, backend: Any, start_s: float) -> list[Row]:
        convs, params, reqs = self.memo["p1_convs"], self.memo["p1_params"], self.memo["p1_reqs"]
        backend.llm.chat(convs[:8], params[:8], use_tqdm=False)
        clocks, outs = [], None
        for _ in range(self.reps):
            fresh_prefix_cache(backend)
            clock, outs = clocked(lambda: backend.llm.chat(convs, params, use_tqdm=False))
            clocks.append(clock)
        eager = self.memo["p1_raw_texts"]
        same = sum(o.outputs[0].text == eager[r.key] for r, o in zip(reqs, outs)) / len(reqs)
        wall, cpu, detail = clock_ratio(clocks, self.memo["p1_raw"])
        start_eager = self.memo.get("start_eager_s") or 0.0
        return [Row("COMPILE", f"compiled / eager raw LLM.chat, wall, P1 prompts (best of {self.reps})", wall, None,
                    detail={**detail, "identical": same, "start_compiled_s": start_s, "start_eager_s": start_eager},
                    note=f"CPU ratio {cpu:.3f}; engine start {start_s:.0f} s vs {start_eager:.0f} s eager; "
                         f"identical outputs {same:.0%}")]


def run(*, quick: bool, only: set[str], folder: Path, log=print) -> list[Row]:
    """The engine benchmarks, one engine at a time (2 cores: never two at once)."""
    bench = EngineBench(quick=quick, folder=folder)
    rows: list[Row] = []
    want = lambda *ids: any(i in only for i in ids)  # noqa: E731

    def with_engine(label: str, fn, **options) -> None:
        log(f"[bench] starting engine: {label}")
        t, backend = timed(lambda: engine(**options))
        try:
            fn(backend, t)
        finally:
            backend.close()

    def main_engine(backend: Any, start_s: float) -> None:
        bench.memo["start_eager_s"] = start_s
        if want("P1", "COMPILE"):
            log("[bench] P1")
            rows.extend(bench.p1(backend))
        if want("P2"):
            log("[bench] P2")
            rows.extend(bench.p2(backend))
        if want("P3"):
            log("[bench] P3 (caching on)")
            rows.extend(bench.p3_prefix_check(backend))
            bench.p3_run(backend, "on")
        if want("P4"):
            log("[bench] P4")
            rows.extend(bench.p4(backend))
        if want("SPEC"):
            log("[bench] SPEC (baseline)")
            bench.spec_run(backend, "off")
        if want("CTX") and not quick:
            log("[bench] CTX")
            rows.extend(bench.ctx(backend))
        if want("PROBE"):
            from . import measures
            log("[bench] PROBE")
            rows.extend(measures.run(backend, quick=quick, out=bench.out))

    def guidance(backend: Any, _: float) -> None:
        rows.extend(bench.p4(backend, tag="P4-guidance"))

    def b32(backend: Any, _: float) -> None:
        rows.extend(bench.p2(backend, tag="B32-P2"))
        bench.p3_run(backend, "b32")
        rows.extend(bench.p3_rows(on="b32", tag="B32-P3"))

    if want("P1", "P2", "P3", "P4", "SPEC", "COMPILE", "CTX", "PROBE"):
        with_engine("default (eager, prefix caching on, block 128)", main_engine)
    if want("P3"):
        with_engine("prefix caching off", lambda b, _: bench.p3_run(b, "off"), enable_prefix_caching=False)
        rows.extend(bench.p3_rows())
    if want("P4") and not quick:
        with_engine("structured outputs: guidance (llguidance)", guidance, structured_outputs_backend="guidance")
    if want("B32") and not quick:
        with_engine("block_size=32", b32, block_size=32)
    if want("SPEC"):
        with_engine("speculative n-gram k=3", lambda b, _: bench.spec_run(b, "on"), speculative_ngram=3)
        rows.extend(bench.spec_rows())
    if want("COMPILE") and not quick:
        with_engine("compiled (enforce_eager=False)", lambda b, t: rows.extend(bench.compile_rows(b, t)),
                    enforce_eager=False)
    return rows
