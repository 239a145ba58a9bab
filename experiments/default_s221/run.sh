#!/usr/bin/env bash
# One cold `make sweep` of this folder's config, timed and recorded as experiments/ten_minutes/run.sh does:
#   bash experiments/default_s221/run.sh avx2|bf16 SEED [VARIANT KEY=VALUE...]
cd "$(dirname "$0")/../.."
EXP=experiments/default_s221 PREFIX=def exec bash experiments/ten_minutes/run.sh "$@"
