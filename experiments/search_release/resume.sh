#!/usr/bin/env bash
# Resume (or start) the product's search from a worktree of the commit it started with, so that later
# commits do not change the trials it still has to train. Run from the repository root; it returns at once
# (the search goes on in the background, its log appended to search.log):
#   bash experiments/search_release/resume.sh
# Stop it with SIGINT to its driver (Tune saves its state; each trial resumes from its last epoch):
#   kill -INT "$(pgrep -f 'kdsweep sweep --config configs/search.yaml' | head -1)"
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
COMMIT=137e255                       # the code the run started with (experiments/search_release/README.md)
WT=${SEARCH_WORKTREE:-$ROOT/../search_run}
if pgrep -f "kdsweep sweep --config configs/search.yaml" >/dev/null; then
  echo "the search is already running (pid $(pgrep -f 'kdsweep sweep --config configs/search.yaml' | head -1))"
  exit 0
fi
if [ ! -f runs/search/kdsweep_config.json ]; then   # no run here (another machine): start over, today's code
  nohup bash scripts/loopback.sh .venv/bin/kdsweep sweep --config configs/search.yaml --no-export \
    >> search.log 2>&1 &
  echo "no runs/search here: the search starts over with this checkout's code; log: $ROOT/search.log"
  exit 0
fi
[ -d "$WT" ] || git worktree add --detach "$WT" "$COMMIT"
mkdir -p cache
[ -e "$WT/runs" ] || ln -s "$ROOT/runs" "$WT/runs"
[ -e "$WT/cache" ] || ln -s "$ROOT/cache" "$WT/cache"
cd "$WT"
PYTHONPATH=$WT nohup bash scripts/loopback.sh "$ROOT/.venv/bin/kdsweep" sweep --config configs/search.yaml \
  --no-export >> "$ROOT/search.log" 2>&1 &
echo "search resumed from $WT ($COMMIT); log: $ROOT/search.log"
