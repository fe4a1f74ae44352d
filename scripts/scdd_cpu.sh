#!/usr/bin/env bash
# SC-DD's CPU measurements (docs/BENCHMARKS.md sections 12-13), one after the other (2 cores):
# the CIFAR-10 leaderboard (SSL vs supervised backbone) and the CIFAR-100 set made on the GPU.
set -e
export SSDD_PROGRESS=0
ssdd leaderboard -c configs/leaderboard/scdd_cifar10_cpu.yaml --docs docs/BENCHMARKS.md
ssdd leaderboard -c configs/leaderboard/scdd_cifar100_cpu.yaml --docs docs/BENCHMARKS.md
