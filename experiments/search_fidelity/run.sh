#!/usr/bin/env bash
# search_fidelity: train every trial of r50.yaml and r20.yaml to its end, two workers of one core each,
# resumable: a rerun skips the trials whose curves are already collected in curves/ (committed) and resumes
# the others from their last epoch (runs/, while this machine keeps it). Run from the repository root:
#   nohup bash experiments/search_fidelity/run.sh > fidelity.log 2>&1 &
# The order puts the cheap, most informative trials first; each worker collects a trial's curve as it ends.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=experiments/search_fidelity
PY=.venv/bin/python
$PY -m orchestrator cache --config $HERE/r50.yaml
$PY -m orchestrator cache --config $HERE/r20.yaml
worker() {   # worker "r50:0 r50:2 ..." : trains those trials one after another
  for item in $1; do
    cfg=${item%%:*} k=${item##*:}
    if [ -f "$HERE/curves/${cfg}_$(printf %02d "$k").jsonl" ]; then continue; fi
    $PY -m orchestrator train --config $HERE/$cfg.yaml --trial "$k" --threads 1 --no-export
    $PY $HERE/collect.py "$cfg" "$k"
  done
}
worker "r50:0 r50:2 r50:4 r50:6 r50:8 r20:0 r50:10 r50:12 r20:2" &
worker "r50:1 r50:3 r50:5 r50:7 r50:9 r20:1 r50:11 r20:3 r50:13" &
wait
