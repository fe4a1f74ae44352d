#!/usr/bin/env bash
# The CPU measurements of docs/BENCHMARKS.md that are not leaderboards, in order (2-core CPU, a few hours in all);
# the leaderboards are scripts/benchmarks_cpu.sh (sections 4-8, 12, 15b) and scripts/campaign.sh (sections 4, 9,
# 9b, 17: committed results). Commands of one-off investigations removed by issue 36 are in `git show
# 805054d:scripts/reproduce_cpu.sh`. DATA must hold cifar-10-batches-py/ and cifar-100-python/
# (python ../shared/data/cifar.py $DATA).
set -euo pipefail
DATA=${DATA:-data}
export SSDD_PROGRESS=${SSDD_PROGRESS:-0}

# section 2b, the teacher zoo: recipe pilots on held-out training images, the two CPU teachers (resumable,
# checkpoints under ~/.cache/ssdd/zoo), their entries, cards and the docs blocks; the step profile
bash scripts/teacher_search.sh "$DATA" 4
bash scripts/zoo_teachers.sh "$DATA"
python scripts/teacher_zoo.py docs docs/BENCHMARKS.md --search ~/.cache/ssdd/teacher_search
python scripts/teacher_zoo.py plot docs/bench/teacher_knn.png --extra ~/.cache/ssdd/teacher_search/simclr_t0.2_crop0.2.json
python scripts/bench_teacher.py --root "$DATA" && python scripts/bench_teacher.py --docs docs/BENCHMARKS.md
# section 9's headroom line (the whole source against 100 random images)
ssdd leaderboard -c configs/leaderboard/headroom_cifar10_cpu.yaml "sources.0.data.root=$DATA" "targets.0.root=$DATA" \
  --docs docs/BENCHMARKS.md

# section 1: KRR-ST outer step (N=1000, real batch 1024, ConvNet-3 pool, ResNet-18 teacher)
python scripts/bench_krrst.py --device cpu --steps 3 --warmup 1 --json docs/bench/krrst_step.jsonl

# the demo (the README's table)
ssdd demo

# sections 12-14, SC-DD: the classifiers (the CIFAR-10 SSL teacher squeezed on CIFAR-10 and on CIFAR-100; a
# supervised ConvNet of the same size) and the recover step's time and memory
ssdd squeeze -c configs/scdd/squeeze_cifar10.yaml data.root="$DATA"
ssdd squeeze -c configs/scdd/squeeze_cifar100.yaml data.root="$DATA" teacher=runs/cifar10/teacher_cpu.safetensors \
  output=runs/cifar100/squeeze_c10teacher.safetensors
python scripts/train_classifier.py --dataset cifar10 --root "$DATA" --arch convnet-32-64-128-bn --iterations 3900 \
  --batch-size 128 -o runs/cifar10/supervised_cpu.safetensors
python scripts/gpu_suite.py --prepare --root "$DATA" --classifier runs/cifar100/squeeze_c10teacher.safetensors
python scripts/bench_scdd.py --device cpu --iters 10 --scales cifar,cifar-resnet18 --json docs/bench/scdd_recover.jsonl

# section 16 and docs/SCALING.md, many processes: every stage under torchrun at sample size (2 gloo processes), and
# the 1-vs-2-process step times
N=2 OUT=/tmp/ssdd_torchrun bash scripts/torchrun_cpu.sh
J=docs/bench/scaling_cpu.jsonl
OMP_NUM_THREADS=1 python scripts/scaling.py measure --threads 1 --steps 9 --json $J
OMP_NUM_THREADS=1 python scripts/scaling.py measure --threads 2 --steps 9 --json $J
OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 scripts/scaling.py measure --threads 1 --steps 9 --json $J
python scripts/scaling.py report --json $J --docs docs/SCALING.md
python scripts/scaling.py model --docs docs/SCALING.md
# section 16, the GPU suite (device calls; see its docstring), then its block from the copied results
python scripts/gpu_suite.py --work .gpu/suite --docs docs/BENCHMARKS.md
