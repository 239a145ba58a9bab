#!/usr/bin/env bash
# The release, on one GPU machine without Ray (plain PyTorch: `--no-ray`, `kdsweep train`):
#   1. two teachers side by side, `kdsweep teacher train`: configs/teacher_x56.yaml (56 px input) and its
#      28-px control experiments/teacher_long/config.yaml; the one with the better validation accuracy teaches;
#   2. the four trials of experiments/release_gpu/config.yaml (the CE control and three distillations), one process
#      each on the same GPU (a 97k-parameter student leaves a GPU mostly idle; four share it).
# Every stage checkpoints each epoch; the same command again resumes. Then, on the CPU machine:
#   kdsweep export --run runs/release_gpu && kdsweep release student --from artifacts/release_gpu
#
# Measured on one H200 (2026-11-29, bench/README.md#the-gpu-stage): the two teachers side by side, 40 epochs
# each, 301 s; the four student processes side by side ~10,000 img/s each with the live teacher (5 s an
# epoch), so 80 epochs (~400 s by that rate; not yet run) should fit one 600-s call once the teacher is
# released (the teacher stage is then skipped).
# What travels there is capped at 64 MiB: move models/teacher/resnet50.pt (46 MB, not needed there) out of
# the checkout for the call, and carry the data (./data, 30 MB) and a torchinfo wheel.
#
# usage: bash experiments/release_gpu/gpu_release.sh PACK_DIR [DEADLINE_S]
#   PACK_DIR receives what comes back: the chosen teacher's weights in <16 MB parts, and runs.tgz (both
#   teachers' sidecars and histories, the student run directory, the logs).
#   DEADLINE_S (default 540): seconds after which unfinished stages are stopped (they resume later) and
#   everything is packed. SMALL=1: a tiny CPU dry run of the same script (512 images, 1 teacher and 5 student epochs).
set -u
PACK=${1:?usage: gpu_release.sh PACK_DIR [DEADLINE_S]}
DEADLINE=${2:-540}
PY=${PYTHON:-python3}
T0=$(date +%s)
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
mkdir -p "$PACK" logs
export PYTHONUNBUFFERED=1

TSET=(); SSET=()
if [ "${SMALL:-0}" = 1 ]; then
  TSET=(--set data.train_limit=512 --set data.val_limit=256 --set optim.epochs=1 --set optim.batch_size=128)
  SSET=(--set data.train_limit=512 --set data.val_limit=256 --set train.epochs=5)
fi
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'

if [ -f models/teacher/resnet50_x56.pt ] && [ "${SMALL:-0}" != 1 ]; then
  echo "== teachers: models/teacher/resnet50_x56.pt is released; not training it again"
else
  echo "== teachers ($(left) s left)"
  for t in x56 long; do
    cfg=configs/teacher_$t.yaml; [ -f "$cfg" ] || cfg=experiments/teacher_$t/config.yaml
    timeout --signal=INT "$(left)" $PY -m orchestrator teacher train --no-ray --gpu \
      --config "$cfg" --out "artifacts/teacher/resnet50_$t.pt" "${TSET[@]}" \
      > "logs/teacher_$t.log" 2>&1 &
  done
  wait
  for t in x56 long; do echo "-- teacher $t"; grep -E "^epoch|released|Error|error" "logs/teacher_$t.log" | tail -n 8; done
fi

TEACHER=$($PY - <<'EOF'
import json, pathlib
acc = {str(p.with_suffix(".pt")): json.loads(p.read_text())["val_acc"]
       for d in ("models/teacher", "artifacts/teacher") for p in pathlib.Path(d).glob("resnet50_*.json")
       if p.stem in ("resnet50_x56", "resnet50_long")}
print(max(acc, key=acc.get) if acc else "")
EOF
)
[ -n "$TEACHER" ] || { echo "no teacher finished"; }
echo "== students, teacher $TEACHER ($(left) s left)"
if [ -n "$TEACHER" ]; then
  for k in 0 1 2 3; do
    timeout --signal=INT "$(left)" $PY -m orchestrator train --config experiments/release_gpu/config.yaml --trial $k \
      --device "${DEVICE:-auto}" --threads 3 --teacher "$TEACHER" --no-export "${SSET[@]}" \
      > "logs/student_$k.log" 2>&1 &
  done
  wait
  for k in 0 1 2 3; do echo "-- trial $k"; grep -E "epoch|Error|error|trials of" "logs/student_$k.log" | tail -n 4; done
fi

echo "== pack ($(left) s left)"
[ -n "$TEACHER" ] && split -b 16000000 -d "$TEACHER" "$PACK/$(basename "$TEACHER").part"
tar czf "$PACK/runs.tgz" logs artifacts/teacher/resnet50_x56*.json \
  artifacts/teacher/resnet50_long*.json runs/release_gpu 2>/dev/null
ls -la "$PACK"
echo "done in $(( $(date +%s) - T0 )) s"
