#!/usr/bin/env bash
# Train the zoo's CPU teachers (configs/teacher/cifar{10,100}_cpu.yaml, the recipe chosen in
# scripts/teacher_search.sh) and add them to distill/zoo with scripts/teacher_zoo.py.
#   bash scripts/zoo_teachers.sh DATA_ROOT [SECONDS_PER_CALL]
# Resumable: checkpoints live outside the work tree ($ZOO_RUNS, default ~/.cache/ssdd/zoo), so a run cut by
# --time-limit (or killed) continues where it stopped when the script is started again.
set -euo pipefail
ROOT=${1:?usage: zoo_teachers.sh DATA_ROOT [SECONDS]}
LIMIT=${2:-100000}
RUNS=${ZOO_RUNS:-$HOME/.cache/ssdd/zoo}
SSDD=${SSDD:-ssdd}
PY=${PY:-python}
mkdir -p "$RUNS"
for ds in cifar10 cifar100; do
  out="$RUNS/$ds-convnet-simclr.safetensors"
  if [ ! -f "$out" ]; then
    resume=(); [ -f "${out%.safetensors}.ckpt.safetensors" ] && resume=(--resume)
    $SSDD teacher -c "configs/teacher/${ds}_cpu.yaml" data.root="$ROOT" output="$out" --time-limit "$LIMIT" "${resume[@]}"
    [ -f "$out" ] || { echo "stopped at the time limit; run again to continue"; exit 3; }
  fi
  grep -q "\"$ds-convnet-simclr\"" distill/zoo/teachers.json 2>/dev/null || \
    $PY scripts/teacher_zoo.py add "$ds-convnet-simclr" "$out" --root "$ROOT" \
      --command "ssdd teacher -c configs/teacher/${ds}_cpu.yaml data.root=DATA" \
      --selection "docs/BENCHMARKS.md section 2b: the recipe with the best k-NN on 5,000 held-out CIFAR-10 training images among 4-epoch pilots (scripts/teacher_search.sh); the test split was not looked at."
done
