#!/usr/bin/env bash
# Choose the CPU teacher's recipe by k-NN on 5,000 held-out CIFAR-10 *training* images (never the test split):
# short pilots of the same length, one after another (one job at a time on the 2-core machine). Each pilot
# writes its teacher + .json (with the k-NN curve) under $OUT; a finished pilot is skipped on a re-run.
#   bash scripts/teacher_search.sh DATA_ROOT [EPOCHS]
# The figures are in docs/BENCHMARKS.md section 2b; `python scripts/teacher_zoo.py search $OUT` prints the table.
set -euo pipefail
ROOT=${1:?usage: teacher_search.sh DATA_ROOT [EPOCHS]}
E=${2:-4}
OUT=${OUT:-$HOME/.cache/ssdd/teacher_search}
SSDD=${SSDD:-ssdd}
mkdir -p "$OUT"
common=(-c configs/teacher/cifar10_cpu.yaml data.root="$ROOT" holdout=5000 test_split=null epochs="$E"
        warmup_epochs=1 knn_every=2 checkpoint_every=1)
run() {  # name overrides...
  local name=$1; shift
  [ -f "$OUT/$name.safetensors" ] && { echo "skip $name (done)"; return; }
  local resume=(); [ -f "$OUT/$name.ckpt.safetensors" ] && resume=(--resume)
  echo "== $name: $*"
  $SSDD teacher "${common[@]}" output="$OUT/$name.safetensors" "$@" "${resume[@]}" 2>&1 | grep -v "^\s*$" | tail -4
}
run simclr_t0.5
run simclr_t0.2 temperature=0.2
run simclr_crop0.2 views.crop_min_scale=0.2
run barlow_twins ssl=barlow_twins projector_hidden=2048 projector_dim=2048 projector_layers=3 lambd=0.005
# second round: the two best changes of the first round together (torch.compile only changes speed)
run simclr_t0.2_crop0.2 temperature=0.2 views.crop_min_scale=0.2 compile=true
