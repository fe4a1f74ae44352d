#!/bin/sh
# Every CPU leaderboard in order (issues 24 and 25), resumable across sittings: each finished leaderboard leaves
# a marker and is skipped; an unfinished one continues from its finished sets and cells. Each run's wall time
# (all its sittings added) is appended to $LOGS/<name>.time, so that BENCHMARKS can state it.
#   LIMIT=SECONDS  stop cleanly after the set or cell that crosses it (default: no limit)
#   DATA=DIR       CIFAR in torchvision's layout (python ../shared/data/cifar.py DIR)
# Needs, for scdd_cifar10_cpu, the supervised backbone (made here when missing; about 10 min).
# Not here: scdd_cifar100_cpu (its sets were recovered on a GPU: scripts/gpu_suite.py); campaigns with committed
# results: scripts/campaign.sh.
#   scripts/benchmarks_cpu.sh measurements   the CPU measurements that are not leaderboards, in order (BENCHMARKS 1,
#                                            2b, 3, 9's headroom, 12-14, 16 and SCALING; a few hours; not resumable
#                                            as a whole: each command skips or resumes its own finished work; the
#                                            removed one-offs: git show 805054d:scripts/reproduce_cpu.sh)
cd "$(dirname "$0")/.." || exit 1
export SSDD_PROGRESS=0
BIN=${BIN:-.venv/bin}
DATA=${DATA:-data}
LOGS=${LOGS:-$HOME/.cache/ssdd/logs}
mkdir -p "$LOGS"
START=$(date +%s)

measurements() {
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
}
if [ "${1:-}" = measurements ]; then
    set -e
    PATH="$BIN:$PATH"
    measurements
    exit 0
fi

left() {   # seconds left of LIMIT, or nothing
    [ -n "$LIMIT" ] && echo $((LIMIT - ($(date +%s) - START)))
}

run() {   # name, then extra arguments of ssdd leaderboard
    name=$1; shift
    [ -f "$LOGS/$name.done" ] && { echo "[$name] done before; skipped"; return 0; }
    rest=$(left)
    if [ -n "$rest" ] && [ "$rest" -le 60 ]; then echo "[$name] no time left"; exit 3; fi
    echo "[$name] $(date -u +%H:%M) start"
    t0=$(date +%s)
    $BIN/ssdd leaderboard -c "configs/leaderboard/$name.yaml" "sources.0.data.root=$DATA" "targets.0.root=$DATA" \
        ${NODOCS:---docs docs/BENCHMARKS.md} ${rest:+--time-limit "$rest"} "$@" >> "$LOGS/$name.log" 2>&1
    status=$?
    echo "$(date -u +%F) $(($(date +%s) - t0)) s, exit $status" >> "$LOGS/$name.time"
    case $status in
        0) touch "$LOGS/$name.done"; echo "[$name] finished" ;;
        3) echo "[$name] stopped at the time limit; run this script again"; exit 3 ;;
        *) echo "[$name] failed (exit $status): see $LOGS/$name.log"; exit $status ;;
    esac
}

run cpu_cifar100_mkdt
if [ ! -f "$LOGS/scdd_cifar10_cpu.done" ] && [ ! -f runs/cifar10/supervised_cpu.safetensors ]; then
    $BIN/python scripts/train_classifier.py --dataset cifar10 --root "$DATA" --arch convnet-32-64-128-bn \
        --iterations 3900 --batch-size 128 -o runs/cifar10/supervised_cpu.safetensors >> "$LOGS/supervised.log" 2>&1 || exit 1
fi
run scdd_cifar10_cpu
run boost_cifar100_cpu
run cpu --summary README.md                # also makes the sets that apps_cifar10_cpu reads (sets_dir)
for app in kd continual transfer nas transfer2; do   # one application per sitting-sized run (continual makes no sets)
    run apps_${app}_cifar10_cpu --summary README.md
done
run apps_continual_cifar100_cpu --summary README.md     # Split CIFAR-100 (makes no sets either)
run privacy_cifar10_cpu                     # the privacy audit: random, random_labelled, KRR-ST, SC-DD, references
run privacy_slow_cifar10_cpu                # and Boost, MKDT beside their own random row
echo "every CPU leaderboard is done; times in $LOGS/*.time"
