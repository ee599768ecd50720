#!/bin/bash
# Issue 28's engine checks (docs/measures.md, "Issue 28 checks on the real engine"). Run under the engine lock on
# a shared machine:  flock /tmp/engine.lock scripts/check_latency_copies.sh [WORKDIR]
#  1. two copies of the bundled weights in one matrix run: every strategy's est. latency p50 per copy;
#  2. a default-suite run, then a 40-unit run of another task: the second's estimate is the reused calibration.
# A fresh request/calibration cache in WORKDIR, so nothing earlier is reused by accident.
set -euo pipefail
W=${1:-/tmp/harness-latency-check}
rm -rf "$W" && mkdir -p "$W/copy"
export HARNESS_REQUEST_CACHE_DIR=$W/cache HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
SRC=$(python -c "from harness.backends.models import bundled_model_dir; print(bundled_model_dir())")
for f in "$SRC"/*; do ln "$f" "$W/copy/" 2>/dev/null || cp -p "$f" "$W/copy/"; done
harness run --task coin_flip --strategy zero_shot --strategy zero_shot:template=terse --strategy cot \
  --model bundled --model "$W/copy" --limit 20 --quiet --out "$W/two"
harness run --limit 10 --quiet --out "$W/suite"   # 110 units: the full calibration, cached
harness run --task coin_flip --strategy zero_shot --limit 40 --quiet --out "$W/small"
python - "$W" <<'PY'
import sys
import pandas as pd
w = sys.argv[1]
two = pd.read_csv(f"{w}/two/summary.csv").pivot(index="strategy", columns="model", values="est_latency_p50_s")
two["ratio"] = two.iloc[:, 1] / two.iloc[:, 0]
print(two.to_string())
suite = pd.read_csv(f"{w}/suite/summary.csv")
print(suite[suite["strategy"] == "cot"][["task", "est_extrapolated_share", "latency_source"]].to_string())
print(pd.read_csv(f"{w}/small/summary.csv")[["strategy", "est_latency_p50_s", "latency_source", "est_calibration"]]
      .to_string())
PY
