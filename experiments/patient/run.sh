#!/usr/bin/env bash
# One chunk of the patient run: `kdsweep train` resumes its trial from the last epoch's checkpoint. The run
# crosses sessions (and machines) through carry/: the trial's epochs so far and its last and best
# checkpoints, put back into the run directory before a chunk and copied out after it (commit carry/ after
# each chunk; ~5 MB). Stop a chunk with `kill <pid>` (SIGTERM; a background job ignores SIGINT): at most
# the epoch under way is lost (checkpoints are written whole after every epoch).
set -euo pipefail
cd "$(dirname "$0")/../.."
carry=experiments/patient/carry
trial=runs/patient/final/local_00
if [ -f "$carry/last.pt" ] && [ ! -f "$trial/checkpoint_last/checkpoint.pt" ]; then
  mkdir -p "$trial/checkpoint_last" "$trial/checkpoint_best"
  cp "$carry/params.json" "$carry/result.json" "$trial/"
  cp "$carry/last.pt" "$trial/checkpoint_last/checkpoint.pt"
  cp "$carry/best.pt" "$trial/checkpoint_best/checkpoint.pt"
fi
status=0
.venv/bin/kdsweep train --config experiments/patient/config.yaml --no-export "$@" || status=$?
if [ -f "$trial/checkpoint_last/checkpoint.pt" ]; then  # each copy whole, then renamed over the old one
  mkdir -p "$carry"
  for pair in params.json:params.json result.json:result.json checkpoint_last/checkpoint.pt:last.pt \
              checkpoint_best/checkpoint.pt:best.pt; do
    cp "$trial/${pair%%:*}" "$carry/${pair##*:}.tmp" && mv "$carry/${pair##*:}.tmp" "$carry/${pair##*:}"
  done
fi
exit $status
