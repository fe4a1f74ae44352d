#!/usr/bin/env bash
# Boost's ablation leaderboard (configs/leaderboard/boost_cifar100.yaml) on a GPU, for one device call of <= 9 minutes.
# Needs, in the ignored folder .gpu/: whl/ (kornia, kornia_rs, omegaconf wheels for the device's Python) and c100.npz
# (scripts/gpu_prepare_cifar100.py: CIFAR-100, 50 train images per class + the whole test split), and the teacher
# runs/cifar10/teacher_cpu.safetensors (carry both). Cells and sets are files, so a second call (or a CPU run of the
# same leaderboard with the same overrides) continues where a call stopped. Results go to $OUT/boost_lb.tgz.
# TOY=1: a seconds-long run of every part on any device (the CPU check before a GPU call).
set -u
OUT=${OUT:-/tmp/gpu_boost_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 SSDD_PROGRESS=0 SSDD_CACHE_DIR=${SSDD_CACHE_DIR:-/tmp/ssdd_cache}
PY=${PY:-python3}
if [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; $PY -c "import torch; print(torch.__version__)"; date -u) > "$OUT/machine.txt"
T() { local s=$1; shift; echo "== $(date -u +%T) $* (limit ${s}s)"; timeout "$s" "$@"; echo "== exit $?"; }
LB=${LB:-reports/leaderboard_boost_cifar100_gpu}
SRC="sources.0.data={name: npz, root: .gpu/c100.npz}"
TGT="targets=[{name: npz, root: .gpu/c100.npz}]"
if [ -n "${TOY:-}" ]; then
  EXTRA=("sources.0.budgets=[25]" "seeds=[0]" "rows.2.steps=2" "rows.3.steps=2" "rows.4.steps=2"
         "protocols=[{name: krrst, overrides: {pretrain: {epochs: 1}, finetune: {iterations: 2}, linear: {steps: 2}}}]")
else
  EXTRA=()
fi
T ${LB_T:-480} $PY -m distill leaderboard -c configs/leaderboard/boost_cifar100.yaml "$SRC" "$TGT" "output=$LB" "${EXTRA[@]}"
tar czf "$OUT/boost_lb.tgz" "$LB" 2>/dev/null
echo "done $(date -u +%T)"
