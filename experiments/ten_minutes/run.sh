#!/usr/bin/env bash
# One cold `make sweep` of this folder's config:
#   bash experiments/ten_minutes/run.sh avx2|bf16 SEED [VARIANT KEY=VALUE...]
# avx2 holds ATen and oneDNN to their AVX2 kernels (the fp32 path an AVX2-only CPU takes); bf16 is the machine's
# own path. VARIANT names the --set that follow it (e.g. floor20 final.min_epochs=20). Cold: its own cache folder and run
# name, nothing reused. A run whose record exists is not rerun.
set -euo pipefail
cd "$(dirname "$0")/../.."
# another experiment's timed runs reuse this script: EXP its folder (config.yaml, the records), PREFIX the start of its runs' names
EXP=${EXP:-experiments/ten_minutes} PREFIX=${PREFIX:-ten}
path=$1 seed=$2 variant=${3:-}
extra=("${@:4}")
name=${PREFIX}_${path}${variant:+_$variant}_s$seed
out=$EXP/$name
[[ -f $out/metrics.json ]] && { echo "$name: recorded"; exit 0; }
case $path in
  avx2) env=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2) ;;
  bf16) env=() ;;
  *) echo "usage: $0 avx2|bf16 SEED [VARIANT KEY=VALUE...]" >&2; exit 2 ;;
esac
args="--set name=$name --set train.seed=$seed"
for kv in "${extra[@]}"; do args+=" --set $kv"; done
rm -rf "runs/$name" "artifacts/$name" "/tmp/kdsweep_cache_$name"
log=/tmp/$name.log
t0=$(date +%s)
env "${env[@]}" make sweep CONFIG=$EXP/config.yaml \
  ARGS="$args --set teacher.cache_dir=/tmp/kdsweep_cache_$name" >"$log" 2>&1
t1=$(date +%s)
mkdir -p "$out"
cp "artifacts/$name/metrics.json" "$out/metrics.json"
cp "runs/$name/results.csv" "$out/results.csv"
{
  date -u -d "@$t0"
  lscpu | grep 'Model name'
  grep -o -E 'avx512_bf16|amx_bf16|avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
  echo "${env[*]} make sweep CONFIG=$EXP/config.yaml ARGS=\"$args\""
  grep -E '^(students|teacher|plan|grow|search|final stage|sweep|exported|skip|the search|ensemble)' "$log" \
    | grep -v 'missing chunks' || true
  echo "wall $((t1 - t0)) s"
} >"$out/log_excerpt.txt"
cat "$out/log_excerpt.txt"
