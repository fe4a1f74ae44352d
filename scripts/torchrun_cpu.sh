#!/usr/bin/env bash
# Every long stage under torchrun on this CPU (gloo), N processes, at sample size: the commands of the README's
# "Many GPUs" section, checked end to end. On GPUs, drop device=cpu and set N to the GPU count.
#   N=2 OUT=/tmp/ssdd_torchrun bash scripts/torchrun_cpu.sh
set -euo pipefail
N=${N:-2}
OUT=${OUT:-/tmp/ssdd_torchrun}
PY=${PY:-python}
export SSDD_PROGRESS=${SSDD_PROGRESS:-0} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RUN="$PY -m torch.distributed.run --standalone --nproc_per_node $N -m distill"
T=$OUT/teacher.safetensors
step() { echo "== $(date -u +%T) $*"; local t0=$SECONDS; "$@"; echo "== $((SECONDS - t0)) s"; }
mkdir -p "$OUT"
step $RUN teacher -c configs/teacher/sample.yaml epochs=3 device=cpu output=$T
step $RUN distill -c configs/krr_st/sample.yaml teacher=$T steps=30 device=cpu output=$OUT/krr_st.safetensors
step $RUN distill -c configs/boost/sample.yaml teacher=$T steps=10 device=cpu output=$OUT/boost.safetensors
step $RUN experts -c configs/mkdt/experts_sample.yaml teacher=$T experts=2 epochs=3 device=cpu output=$OUT/experts
step $RUN distill -c configs/mkdt/sample.yaml teacher=$T params.experts=$OUT/experts steps=10 device=cpu \
  output=$OUT/mkdt.safetensors
step $PY -m distill squeeze -c configs/scdd/squeeze_sample.yaml teacher=$T epochs=5 device=cpu output=$OUT/squeeze.safetensors
step $RUN distill -c configs/scdd/sample.yaml params.classifier=$OUT/squeeze.safetensors steps=20 device=cpu \
  output=$OUT/scdd.safetensors
step $RUN evaluate $OUT/krr_st.safetensors $OUT/boost.safetensors $OUT/mkdt.safetensors -c configs/eval/sample.yaml \
  pretrain.epochs=5 linear.steps=20 device=cpu -o $OUT/eval
ls -la "$OUT" "$OUT/eval"
