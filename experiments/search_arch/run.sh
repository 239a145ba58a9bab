#!/usr/bin/env bash
# One chunk of the architecture search: trains the candidates the ledger has not ended (a rerun on the same
# machine resumes the interrupted Tune experiment; on a fresh machine it starts one from the ledger), then, once
# every candidate has ended, the final stage and the export. Commit experiments/search_arch/ledger after it.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec bash scripts/loopback.sh .venv/bin/kdsweep sweep --config experiments/search_arch/config.yaml --tta auto "$@"
