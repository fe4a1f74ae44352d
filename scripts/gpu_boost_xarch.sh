#!/usr/bin/env bash
# Cross-architecture rows of Boost's ablation: the N = 100 sets of the boost_cifar100 leaderboard (copied to
# .gpu/boost_n100/) pre-trained and evaluated under the same KRR-ST protocol on other architectures, one
# `ssdd transfer` per architecture (each written and packed as it ends). Same wheels / data as gpu_boost.sh.
# TOY=1: a seconds-long run on any device.
set -u
OUT=${OUT:-/tmp/gpu_xarch_out}
. "$(dirname "$0")/gpu_env.sh"
D=.gpu/boost_n100
SETS="sets=[{label: random, path: $D/random.safetensors}, {label: random_labelled, path: $D/random-labelled.safetensors}, \
{label: krr_st, path: $D/krr-st.safetensors}, {label: 'boost: + bases', path: $D/boost-bases.safetensors}, \
{label: 'boost: + bases, views, networks', path: $D/boost-bases-views-networks.safetensors}]"
if [ -n "${TOY:-}" ]; then P=("pretrain.epochs=1" "finetune.iterations=2" "linear.steps=2"); ARCHS=${ARCHS:-"alexnet"}
else P=("pretrain.epochs=200" "finetune.iterations=200" "finetune.batch_size=128" "linear.steps=100"); ARCHS=${ARCHS:-"alexnet vgg11 resnet18 mobilenetv2"}; fi
for a in $ARCHS; do
  echo "== $(date -u +%T) $a"
  timeout ${ARCH_T:-150} $PY -c 'import sys; from applications.transfer.cli import transfer; transfer(sys.argv[1:], prog_name="ssdd transfer")' "$SETS" "archs=[$a]" "targets=[{name: npz, root: ${NPZ:-.gpu/c100.npz}}]" \
    "${P[@]}" "seeds=${SEEDS:-[0]}" "output=${XOUT:-reports/boost_xarch}/$a" 2>&1 | grep -v "^  " | tail -20
  tar czf "$OUT/xarch.tgz" ${XOUT:-reports/boost_xarch} 2>/dev/null
done
echo "done $(date -u +%T)"
