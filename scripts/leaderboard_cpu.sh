#!/bin/sh
# The CPU leaderboard (docs/BENCHMARKS.md section 9), resumable: each step is skipped or resumed when
# its output exists. CIFAR-10 must be in data/cifar-10-batches-py (torchvision's layout; where you are
# online, `ssdd data prepare cifar10 --root data --download` fetches it).
cd "$(dirname "$0")/.." || exit 1
export SSDD_PROGRESS=0
BIN=${BIN:-.venv/bin}
# the teacher is the zoo's cifar10-convnet-simclr (shipped in the package: nothing to train first)
$BIN/ssdd leaderboard -c configs/leaderboard/cpu.yaml --docs docs/BENCHMARKS.md --summary README.md
