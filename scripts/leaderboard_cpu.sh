#!/bin/sh
# The CPU leaderboard (docs/BENCHMARKS.md section 9), resumable: each step is skipped or resumed when
# its output exists. CIFAR-10 must be in data/cifar-10-batches-py (torchvision's layout; where you are
# online, `ssdd data prepare cifar10 --root data --download` fetches it).
cd "$(dirname "$0")/.." || exit 1
export SSDD_PROGRESS=0
BIN=${BIN:-.venv/bin}
if [ ! -f runs/cifar10/teacher_cpu.safetensors ]; then
  if [ -f runs/cifar10/teacher_cpu.ckpt.safetensors ]; then R=--resume; else R=; fi
  $BIN/ssdd teacher -c configs/teacher/cifar10_cpu.yaml data.root=data epochs=10 $R || exit 1
fi
$BIN/ssdd leaderboard -c configs/leaderboard/cpu.yaml --docs docs/BENCHMARKS.md --summary README.md
