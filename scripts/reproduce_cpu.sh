#!/usr/bin/env bash
# The CPU measurements of docs/BENCHMARKS.md, in order (2-core CPU, several hours in all).
# DATA must hold cifar-10-batches-py/ and cifar-100-python/ (python ../shared/data/cifar.py $DATA).
set -euo pipefail
DATA=${DATA:-data}
export SSDD_PROGRESS=${SSDD_PROGRESS:-0}

# the teacher zoo (section 2b): recipe pilots on held-out training images, the two CPU teachers (resumable,
# checkpoints under ~/.cache/ssdd/zoo), their entries, cards and the docs blocks; the step profile
bash scripts/teacher_search.sh "$DATA" 4
bash scripts/zoo_teachers.sh "$DATA"
python scripts/teacher_zoo.py docs docs/BENCHMARKS.md --search ~/.cache/ssdd/teacher_search
python scripts/teacher_zoo.py plot docs/bench/teacher_knn.png --extra ~/.cache/ssdd/teacher_search/simclr_t0.2_crop0.2.json
python scripts/bench_teacher.py --root "$DATA" && python scripts/bench_teacher.py --docs docs/BENCHMARKS.md
# headroom of the CPU CIFAR-10 setting (top of section 9)
ssdd leaderboard -c configs/leaderboard/headroom_cifar10_cpu.yaml "sources.0.data.root=$DATA" "targets.0.root=$DATA" \
  --docs docs/BENCHMARKS.md

# KRR-ST outer step at the CIFAR-100 setting (N=1000, real batch 1024, ConvNet-3 pool, ResNet-18 teacher)
python scripts/bench_krrst.py --device cpu --steps 3 --warmup 1 --json docs/bench/krrst_step.jsonl

# core: SimCLR teacher on CIFAR-100 -> KRR-ST and random at N=100/1000 -> linear probes on CIFAR-100/10
python scripts/cifar100_quality.py --root "$DATA" --work runs/c100 --report reports/cifar100_cpu --budgets 100 --steps 100:1000

# continual: Split CIFAR-10, equal memory (20 real images per class); finished runs are kept in
# reports/continual_cifar10/runs/ (the 2026-11-21 run was stopped before the distilled retrain rows)
ssdd continual -c configs/apps/continual_cifar10.yaml root="$DATA"

# demo (the README's table)
ssdd demo

# why KRR-ST does (not) beat random: diagnostics on held-out training images, plus a lower-lr KRR-ST variant
ssdd distill data.name=cifar100 data.root="$DATA" teacher=runs/c100/teacher.safetensors method=krr_st budget=100 \
  steps=1000 output=runs/c100/krr_st_n100_lr1e-3.safetensors params.pool_arch=convnet-32-64-128-bn params.pool_size=4 \
  params.pool_steps=100 params.real_batch=256 params.lr_images=1e-3 params.lr_targets=1e-3
python scripts/krrst_diagnose.py --root "$DATA" --teacher runs/c100/teacher.safetensors runs/c100/krr_st_n100.safetensors \
  runs/c100/random_n100.safetensors -o reports/krrst_diagnose
python scripts/krrst_diagnose.py --root "$DATA" --teacher runs/c100/teacher.safetensors \
  runs/c100/krr_st_n100_lr1e-3.safetensors -o reports/krrst_diagnose_lr1e-3

# N=1000 (fewer steps and a shorter pool lifetime than N=100: the pool warm-up alone is ~200 full-batch passes)
python scripts/cifar100_quality.py --root "$DATA" --work runs/c100 --report reports/cifar100_cpu_n1000 --budgets 1000 \
  --steps 1000:100 --pool-steps 20 --no-baseline

# NAS: proxy quality of the CIFAR-100 N=100 sets for ranking ConvNets on CIFAR-10
ssdd nas -c configs/apps/nas_cifar10.yaml --evaluate-proxy target.root="$DATA" \
  "proxies=[{label: KRR-ST N=100, path: runs/c100/krr_st_n100.safetensors}, {label: random N=100, path: runs/c100/random_n100.safetensors}]" \
  "space_args={depths: [2, 3, 4], widths: [16, 32, 64]}" pretrain.epochs=100 score.train_per_class=500 \
  score.val_per_class=200 ground_truth.epochs=5 ground_truth.train_per_class=1000 num_archs=12 \
  ground_truth.cache_dir=runs/nas_gt output=reports/nas_cifar10_cpu

# KD: a CIFAR-10 teacher distilled into students through the CIFAR-100 sets
python scripts/train_classifier.py --dataset cifar10 --root "$DATA" --arch convnet-32-64-128-bn --iterations 2000 \
  -o runs/c10/classifier.safetensors
ssdd kd -c configs/apps/kd_cifar10.yaml teacher=runs/c10/classifier.safetensors set=runs/c100/krr_st_n100.safetensors \
  random_set=runs/c100/random_n100.safetensors target.root="$DATA" "students=[convnet-32-64-128-bn]" \
  iterations=400 batch_size=256 lr=1e-3 "seeds=[0, 1]" output=reports/kd_cifar10_cpu

# transfer: four architectures pre-trained on the N=100 sets, linear probe on CIFAR-100 (50 train / 20 test images per class)
ssdd transfer -c configs/apps/transfer_cifar100.yaml \
  "sets=[{label: KRR-ST, path: runs/c100/krr_st_n100.safetensors}, {label: random, path: runs/c100/random_n100.safetensors}]" \
  "archs=[convnet-32-64-128-bn, alexnet, vgg11, resnet10]" \
  "targets=[{name: cifar100, root: $DATA, train_per_class: 50, test_per_class: 20}]" pretrain.epochs=50 finetune.enabled=false \
  linear.enabled=true linear.steps=100 "seeds=[0]" output=reports/transfer_cpu

# --- release of the engine (issue 10), 2026-11-25 -------------------------------------------------
# the demo, and this release against release 0.1 on one machine (bit-for-bit check)
ssdd demo -o reports/demo
git worktree add /tmp/ssdd-0.1 860e55b
PYTHONPATH=/tmp/ssdd-0.1 python scripts/release_equivalence.py /tmp/eq/old
PYTHONPATH=$PWD python scripts/release_equivalence.py /tmp/eq/new
python scripts/release_equivalence.py --compare /tmp/eq/old /tmp/eq/new
# fp32 vs bf16 autocast on this CPU, and KRR-ST's outer backward (this release vs 0.1), interleaved
python scripts/bench_amp.py --device cpu --repeats 7 --json docs/bench/amp.jsonl
python scripts/bench_krrst.py --device cpu --steps 3 --warmup 1 --compare-backward --json docs/bench/krrst_step.jsonl

# --- SC-DD (issue 14), 2026-11-26 ------------------------------------------------------------------------
# classifiers: the CIFAR-10 SSL teacher squeezed on CIFAR-10 and on CIFAR-100; a supervised ConvNet of the same size
ssdd squeeze -c configs/scdd/squeeze_cifar10.yaml data.root="$DATA"
ssdd squeeze -c configs/scdd/squeeze_cifar100.yaml data.root="$DATA" teacher=runs/cifar10/teacher_cpu.safetensors \
  output=runs/cifar100/squeeze_c10teacher.safetensors
python scripts/train_classifier.py --dataset cifar10 --root "$DATA" --arch convnet-32-64-128-bn --iterations 3900 \
  --batch-size 128 -o runs/cifar10/supervised_cpu.safetensors
# the GPU part (one call of about 7 minutes: device run with carry [.gpu, .ref]): bash scripts/gpu_scdd.sh
python scripts/gpu_prepare_cifar100.py --root "$DATA" --classifier runs/cifar100/squeeze_c10teacher.safetensors
# the CPU tables (sections 12-13; the GPU's scdd set copied into reports/leaderboard_scdd_cifar100/sets/...)
bash scripts/scdd_cpu.sh
python scripts/bench_scdd.py --device cpu --iters 10 --scales cifar,cifar-resnet18 --json docs/bench/scdd_recover.jsonl

# --- many processes (issue 16), 2026-11-26 -----------------------------------------------------------------
# every stage under torchrun at sample size (2 gloo processes), and the 1-vs-2-process step times of docs/SCALING.md
N=2 OUT=/tmp/ssdd_torchrun bash scripts/torchrun_cpu.sh
J=docs/bench/scaling_cpu.jsonl
OMP_NUM_THREADS=1 python scripts/scaling.py measure --threads 1 --steps 9 --json $J
OMP_NUM_THREADS=1 python scripts/scaling.py measure --threads 2 --steps 9 --json $J
OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 scripts/scaling.py measure --threads 1 --steps 9 --json $J
python scripts/scaling.py report --json $J --docs docs/SCALING.md
python scripts/scaling.py model --docs docs/SCALING.md
# the GPU suite (device calls; carry .gpu/whl .gpu/c100_small.npz .gpu/suite .ref runs/cifar10/teacher_cpu.safetensors)
#   source scripts/gpu_env.sh && $PY scripts/gpu_suite.py --work .gpu/suite --budget-s 500 --copy-to $OUT
python scripts/gpu_suite.py --work .gpu/suite --docs docs/BENCHMARKS.md
