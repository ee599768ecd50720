"""Content-addressed unit identity: what a finished unit IS, so a resume reuses exactly the units whose
content matches and never a stale one.

A unit's identity is a dict of components, and `unit_id` is the sha256 of that dict:

    task      the task's name and a hash of its parsed YAML settings (answer type, max_tokens, stop, ...)
    template  the template file's content hash
    strategy  the normalized strategy: its name plus the parameters that differ from their defaults
              (`cot` and `cot:k=0` are the same strategy)
    seed      the run seed
    model     the model's display name and a fingerprint of its weights (see `model_identity`)
    item      a hash of the item's data (id, fields, gold, choices, labels, rationale)
    prompt    a hash of the rendered requests (messages, sampling, output type, continuations), which
              also covers included templates, the few-shot pool and the harness's own prompt layout

The components are journaled next to each row, so a refusal can say what changed.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from .results import entry_id, unit_key

COMPONENTS = ("task", "template", "strategy", "seed", "model", "item", "prompt")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SMALL = 4 * 2**20


def _h(obj: Any) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, ensure_ascii=False, default=_plain)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _plain(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars in data rows
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    return str(o)  # dates, bytes, decimals: their text


# parameter values that mean "not given" (for the normalized spec: `cot:k=0` is `cot`)
_COMMON_DEFAULTS = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "beam_width": 0, "guided": False,
                    "greedy": False, "as_chat": False, "selection": "first"}
PARAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "zero_shot": {}, "few_shot": {"k": 5}, "cot": {"k": 0},
    "self_consistency": {"k": 8, "temperature": 0.7, "top_k": 40, "base": "cot", "shots": 0},
}


def param_defaults(name: str) -> dict[str, Any]:
    return {**_COMMON_DEFAULTS, **PARAM_DEFAULTS.get(name, {})}


def normalized_strategy(strategy) -> str:
    """`name` or `name:k=v,...` with only the parameters that differ from the defaults, sorted."""
    name = strategy.spec.partition(":")[0].strip()
    defaults = param_defaults(name)
    keep = {k: v for k, v in strategy.params.items() if k not in defaults or defaults[k] != v}
    if not keep:
        return name
    def fmt(v):
        return "|".join(v) if isinstance(v, tuple) else str(v).lower() if isinstance(v, bool) else str(v)
    return name + ":" + ",".join(f"{k}={fmt(v)}" for k, v in sorted(keep.items()))


@lru_cache(maxsize=64)
def weights_fingerprint(path: str) -> str | None:
    """A fingerprint of a local model folder: every file's name and size, the full content of the small
    files (config, tokenizer, generation config) and the first and last 4 MiB of each weight file. None
    for a hub id or a remote model whose folder is not on this machine."""
    root = Path(path)
    if not root.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(x for x in root.rglob("*") if x.is_file() and not x.name.startswith(".")):
        size = p.stat().st_size
        h.update(f"{p.relative_to(root)}\0{size}\0".encode())
        with p.open("rb") as f:
            if size <= _SMALL or not p.name.endswith(WEIGHT_SUFFIXES):
                h.update(f.read(_SMALL))
            else:
                h.update(f.read(_SMALL))
                f.seek(size - _SMALL)
                h.update(f.read(_SMALL))
    return h.hexdigest()[:16]


def model_identity(backend) -> dict[str, Any]:
    """{'name': display name, 'weights': fingerprint or the model's path/id when it cannot be read}."""
    path = getattr(backend, "model_path", None)
    weights = weights_fingerprint(str(path)) if path and os.path.isabs(str(path)) else None
    return {"name": backend.model_name, "weights": weights or (str(path) if path else None)}


def item_hash(example) -> str:
    return _h({"id": example.id, "fields": dict(example.fields), "gold": example.gold,
               "choices": list(example.choices), "labels": list(example.labels), "rationale": example.rationale})


# task keys added after runs existed: left out of the hash while at their default, so those runs resume
_LATER_TASK_KEYS = {"format": None, "num_fewshot": 0, "judge": None}
_LATER_SOURCE_KEYS = {"sample": None, "seed": 0}


def task_hash(task) -> str:
    spec = task.spec.model_dump(mode="json")
    for keys, d in ((_LATER_TASK_KEYS, spec), (_LATER_SOURCE_KEYS, spec.get("source") or {})):
        for k, default in keys.items():
            if k in d and d[k] == default:
                del d[k]
    return _h(spec)


def requests_hash(requests) -> str:
    # a completion-format request adds its plain-text prompt (chat-format hashes stay as they were)
    return _h([[[[m.role, m.content] for m in r.messages], r.sampling.as_dict(),
                [r.output_type.kind, r.output_type.spec] if r.output_type else None, list(r.continuations)]
               + ([r.prompt] if r.prompt is not None else [])
               for r in requests])


def unit_identity(unit, *, seed: int, model: Mapping[str, Any], _cache: dict | None = None) -> dict[str, Any]:
    """The components of one unit, plus 'id' (the hash of the components)."""
    task, strat = unit.task, unit.strategy
    c = _cache if _cache is not None else {}
    tkey = ("t", id(task))
    if tkey not in c:
        c[tkey] = (task, f"{task.name}#{task_hash(task)}", task.template.hash)
    skey = ("s", id(strat))
    if skey not in c:
        c[skey] = (strat, normalized_strategy(strat))
    comp = {"task": c[tkey][1], "template": c[tkey][2], "strategy": c[skey][1], "seed": seed,
            "model": f"{model['name']}#{model['weights']}", "item": item_hash(unit.example),
            "prompt": requests_hash(unit.requests)}
    comp["id"] = _h(comp)
    return comp


def describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Words for the components that differ between two identities."""
    out = []
    for k in COMPONENTS[:-1]:
        if old.get(k) != new.get(k):
            if k == "seed":
                out.append(f"seed {old.get(k)} -> {new.get(k)}")
            elif k == "strategy":
                out.append(f"strategy '{old.get(k)}' -> '{new.get(k)}'")
            elif k == "model":
                o, n = str(old.get(k)).split("#")[0], str(new.get(k)).split("#")[0]
                out.append(f"model {o} -> {n}" if o != n else f"the weights of model {n}")
            elif k == "template":
                out.append(f"template hash {old.get(k)} -> {new.get(k)}")
            elif k == "task":
                out.append(f"the settings of task {str(new.get(k)).split('#')[0]}")
            elif k == "item":
                out.append("the item data")
    if not out and old.get("prompt") != new.get("prompt"):
        out.append("the rendered prompts (an included template, the few-shot pool or the harness version)")
    return out


def check_distinct(strategies: Sequence[Any]) -> None:
    """The same strategy twice, by spec or after normalization (`cot` and `cot:k=0`), is refused."""
    seen: dict[str, str] = {}
    for s in strategies:
        norm = normalized_strategy(s)
        if norm in seen:
            same = "is given twice" if seen[norm] == s.spec else f"and '{seen[norm]}' are the same strategy ({norm})"
            raise ConfigError(f"'{s.spec}' {same}", where=", ".join(x.spec for x in strategies),
                              field="--strategy", fix="give each strategy once")
        seen[norm] = s.spec


@dataclass
class Plan:
    pending: list
    identity: dict[int, dict]  # id(unit) -> its identity
    conflicts: list[tuple[dict, dict, tuple]]  # (old identity, new identity, slot)
    labels: dict[str, str]  # unit id -> strategy label, for units run next to changed old ones (force)
    total: int

    def refusal(self, run_dir: Path) -> ConfigError:
        old, new, _ = self.conflicts[0]
        changes = describe_change(old, new)
        return ConfigError(f"this run folder holds results of another configuration: {', '.join(changes)} "
                           f"({len(self.conflicts)} of {self.total} units differ)", where=str(run_dir), field="--out",
                           fix="give a new --out, or add --force to run the changed units next to the old ones, "
                               f"labelled '{self.labels[new['id']]}'")


def plan_units(units: list, previous: list[dict], *, seed: int, model: dict, retry_errors: bool = True) -> Plan:
    """Which units to run: those whose identity is not in the journal (or is there with an error, when
    `retry_errors`). A unit whose slot (task, strategy, model, example) holds an old unit of another
    identity is a conflict; its label would be `SPEC@CONFIG` (CONFIG: a hash of what differs)."""
    have = {entry_id(e): e for e in previous}
    legacy = {unit_key(e["p"]) for e in previous if "u" not in e}  # journals from before unit ids
    slots = {unit_key(e["p"]): e for e in previous if "u" in e}
    identity, pending, conflicts, labels, cache = {}, [], [], {}, {}
    was_enabled = gc.isenabled()
    gc.disable()  # acyclic records only (see runner._gc_paused)
    try:
        for u in units:
            ident = unit_identity(u, seed=seed, model=model, _cache=cache)
            identity[id(u)] = ident
            slot = (u.task.name, u.strategy.spec, model["name"], u.example.id)
            hit = have.get(ident["id"])
            if hit is not None or slot in legacy:
                if hit is not None and retry_errors and hit["p"].get("error"):
                    pending.append(u)
                elif hit is None and retry_errors and have.get(slot, {}).get("p", {}).get("error"):
                    pending.append(u)
                continue
            pending.append(u)
            old = slots.get(slot)
            if old is not None:
                config = {k: ident[k] for k in ("task", "template", "strategy", "seed", "model")}
                labels[ident["id"]] = f"{u.strategy.spec}@{_h(config)[:8]}"
                conflicts.append((old["u"], ident, slot))
    finally:
        if was_enabled:
            gc.enable()
    return Plan(pending, identity, conflicts, labels, len(units))
