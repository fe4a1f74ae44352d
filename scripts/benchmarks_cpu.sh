#!/bin/sh
# Every CPU leaderboard in order (issues 24 and 25), resumable across sittings: each finished leaderboard leaves
# a marker and is skipped; an unfinished one continues from its finished sets and cells. Each run's wall time
# (all its sittings added) is appended to $LOGS/<name>.time, so that BENCHMARKS can state it.
#   LIMIT=SECONDS  stop cleanly after the set or cell that crosses it (default: no limit)
#   DATA=DIR       CIFAR in torchvision's layout (python ../shared/data/cifar.py DIR)
# Needs, for scdd_cifar10_cpu, the supervised backbone (made here when missing; about 10 min).
# Not here: scdd_cifar100_cpu (its sets were recovered on a GPU: scripts/gpu_suite.py). The non-leaderboard measurements:
# scripts/reproduce_cpu.sh; campaigns with committed results: scripts/campaign.sh.
cd "$(dirname "$0")/.." || exit 1
export SSDD_PROGRESS=0
BIN=${BIN:-.venv/bin}
DATA=${DATA:-data}
LOGS=${LOGS:-$HOME/.cache/ssdd/logs}
mkdir -p "$LOGS"
START=$(date +%s)

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
echo "every CPU leaderboard is done; times in $LOGS/*.time"
