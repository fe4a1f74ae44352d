#!/usr/bin/env bash
# Boost's ablation leaderboard (configs/leaderboard/boost_cifar100.yaml) on a GPU, for one device call of <= 9 minutes.
# Needs, in the ignored folder .gpu/: whl/ (kornia, kornia_rs, omegaconf wheels for the device's Python) and c100.npz
# (scripts/gpu_prepare_cifar100.py: CIFAR-100, 50 train images per class + the whole test split), and the teacher
# (the zoo teacher ships in the package). Cells and sets are files, so a second call (or a CPU run of the
# same leaderboard with the same overrides) continues where a call stopped. Results go to $OUT/boost_lb.tgz.
# TOY=1: a seconds-long run of every part on any device (the CPU check before a GPU call).
set -u
OUT=${OUT:-/tmp/gpu_boost_out}
. "$(dirname "$0")/gpu_env.sh"
LB=${LB:-reports/leaderboard_boost_cifar100_gpu}
SRC="sources.0.data={name: npz, root: .gpu/c100.npz}"
TGT="targets=[{name: npz, root: .gpu/c100.npz}]"
if [ -n "${TOY:-}" ]; then
  EXTRA=("sources.0.budgets=[25]" "seeds=[0]" "distill_seeds=[0]" "rows.2.steps=2" "rows.3.steps=2" "rows.4.steps=2"
         "protocols=[{name: krrst, overrides: {pretrain: {epochs: 1}, finetune: {iterations: 2}, linear: {steps: 2}}}]")
else
  EXTRA=()
fi
T ${LB_T:-480} $PY -m distill leaderboard -c configs/leaderboard/boost_cifar100.yaml "$SRC" "$TGT" "output=$LB" "${EXTRA[@]}"
tar czf "$OUT/boost_lb.tgz" "$LB" 2>/dev/null
echo "done $(date -u +%T)"
