#!/usr/bin/env bash
# The GPU checks of SC-DD (and the cheap GPU benches of KRR-ST and MKDT), for a device call of <= 9 minutes.
# Needs, in the ignored folder .gpu/: whl/ (kornia, kornia_rs, omegaconf wheels for the device's Python),
# c100.npz (CIFAR-100: 50 train images per class + the whole test split, npz source layout) and
# c100_squeeze.safetensors (the classifier). Results go to $OUT (one tar per part, written as each part ends).
# TOY=1: a seconds-long run of every part on any device (the CPU check before a GPU call).
set -u
OUT=${OUT:-/tmp/gpu_scdd_out}
. "$(dirname "$0")/gpu_env.sh"
DEV=${DEV:-cuda}
if [ -n "${TOY:-}" ]; then
  ITERS=2; STEPS=2; EPOCHS=1; SEEDS="[0]"; LB_T=600; BIG=""
else
  ITERS=50; STEPS=1000; EPOCHS=200; SEEDS="[0,1,2]"; LB_T=${LB_T:-300}; BIG=1
fi
SRC="sources.0.data={name: npz, root: .gpu/c100.npz}"
TGT="targets=[{name: npz, root: .gpu/c100.npz}]"
CLF="sources.0.classifier=.gpu/c100_squeeze.safetensors"
LB="reports/leaderboard_scdd_cifar100_gpu"
# 1. recover iteration time and memory at three scales
T ${BENCH_T:-90} $PY scripts/bench_scdd.py --device $DEV --iters $ITERS --warmup 2 --scales ${SCALES:-all} --json "$OUT/bench_scdd.jsonl"
# 2. quality: IPC 10 then IPC 1, 3 seeds, ResNet-18 students (cells are written as they finish)
T $LB_T $PY -m distill leaderboard -c configs/leaderboard/scdd_cifar100_gpu.yaml "$SRC" "$TGT" "$CLF" \
  "rows.0.steps=$STEPS" "protocols=[{name: scdd, overrides: {relabel: {epochs: $EPOCHS}}}]" \
  "distill_seeds=$SEEDS" "seeds=[0]" "output=$LB" "arch=${ARCH:-resnet18}"
tar czf "$OUT/lb.tgz" --exclude='*.safetensors' "$LB" 2>/dev/null
tar czf "$OUT/sets.tgz" $(find "$LB/sets" -name 'scdd.safetensors') 2>/dev/null
# 3. MKDT iteration at a paper-like size (1000 images, D 512, 40 steps x 256), ours vs the reference
if [ -n "$BIG" ] && [ -d .ref/mtt ]; then
  T ${MKDT_T:-100} $PY scripts/bench_mkdt.py --reference .ref/mtt --device $DEV --images 1000 --dim 512 --syn-steps 40 \
    --batch-syn 256 --iters 3 --json "$OUT/bench_mkdt.jsonl"
fi
# 4. KRR-ST outer step at the CIFAR-100 setting
T ${KRR_T:-60} $PY scripts/bench_krrst.py --device $DEV --steps ${KSTEPS:-20} --json "$OUT/bench_krrst.jsonl"
# 5. IPC 50, one seed (IPC50=1: when the call has the time)
if [ -n "$BIG" ] && [ -n "${IPC50:-}" ]; then
  T ${LB50_T:-150} $PY -m distill leaderboard -c configs/leaderboard/scdd_cifar100_gpu.yaml "$SRC" "$TGT" "$CLF" \
    "sources.0.budgets=[5000]" "seeds=[0]" "output=$LB" \
    "protocols=[{name: scdd, overrides: {relabel: {labels: [teacher, hard]}}}]"
  tar czf "$OUT/lb50.tgz" --exclude='*.safetensors' "$LB" 2>/dev/null
fi
echo "done $(date -u +%T)"
