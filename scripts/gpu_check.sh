#!/usr/bin/env bash
# The GPU check, kept ready for a lent GPU machine (one chip, at most ~10 minutes, the working tree carried,
# no network): the no-Ray paths on CUDA, timed, beside the CPU's recorded figures.
#   1. the default's teacher cache (configs/sweep.yaml) on CUDA: `kdsweep cache --device cuda`;
#   2. the default's KD trial (trial 0) for 3 epochs through `kdsweep train --device cuda`: images/s, s/epoch;
#   3. until ~9 minutes have passed: experiments/search_arch's candidates the ledger has not ended, on CUDA
#      (`kdsweep train` with sweep.ledger), the ledger copied to $OUT/ledger.
# Run from the repository root:  OUT=/some/dir bash scripts/gpu_check.sh   (PY=python3 by default)
# A dry run on a CPU: DEVICE=cpu BUDGET_S=0 EXTRA="--set data.train_limit=512 --set data.val_limit=128" ...
set -uo pipefail
OUT=${OUT:-gpu_check}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-540}
read -r -a EXTRA <<< "${EXTRA:-}"
mkdir -p "$OUT"
export PYTHONPATH=$PWD
T0=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - T0))); }
run() {   # run NAME SECONDS CMD...: a step under a time limit, its log and wall time kept
  local name=$1 limit=$2; shift 2
  local t rc
  t=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"wall_s\": $(($(date +%s) - t))}" >> "$OUT/steps.jsonl"
  return $rc
}
$PY - > "$OUT/device.json" <<'PY'
import json, torch
from orchestrator.machine import machine
print(json.dumps({"machine": machine(), "torch": torch.__version__, "cuda": torch.cuda.is_available(),
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
PY
run cache 150 $PY -m orchestrator cache --config configs/sweep.yaml --device "$DEVICE" \
  --set "teacher.cache_dir=$OUT/cache" "${EXTRA[@]}"
run train 180 $PY -m orchestrator train --config configs/sweep.yaml --device "$DEVICE" --trial 0 --no-export \
  --set "teacher.cache_dir=$OUT/cache" --set "sweep.storage=$OUT/runs" --set train.epochs=3 --set "final={}" \
  --set minutes=0 "${EXTRA[@]}"
grep -h "img/s" "$OUT/train.log" | tail -3
# 3. the architecture search's candidates the ledger has not ended, on CUDA, judged at the same rungs
#    (kdsweep train with sweep.ledger: no Ray); the ledger comes back under $OUT/ledger to commit
S=experiments/search_arch
if [ "$(left)" -gt 90 ]; then
  run search_arch "$(left)" $PY -m orchestrator train --config "$S/config.yaml" --device "$DEVICE" \
    --set "teacher.cache_dir=$OUT/cache" --minutes $(( ($(left) - 60) / 60 )) "${EXTRA[@]}"
  cp -r "$S/ledger" "$OUT/ledger"
fi
cat "$OUT/steps.jsonl"
