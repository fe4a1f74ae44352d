#!/bin/sh
# the CPU leaderboard, resumable: each step is skipped or resumed when its output exists
cd /work/main
export SSDD_PROGRESS=0
if [ ! -f runs/cifar10/teacher_cpu.safetensors ]; then
  if [ -f runs/cifar10/teacher_cpu.ckpt.safetensors ]; then R=--resume; else R=; fi
  .venv/bin/ssdd teacher -c configs/teacher/cifar10_cpu.yaml data.root=data epochs=10 $R || exit 1
fi
.venv/bin/ssdd leaderboard -c configs/leaderboard/cpu.yaml --docs docs/BENCHMARKS.md
