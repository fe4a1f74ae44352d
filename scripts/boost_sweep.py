#!/usr/bin/env python
"""The small sweeps behind Boost's open choices (issue 15), judged by the outer loss only.

Each run distils the same source with the same teacher and step budget and reports the mean outer
loss (KRR prediction error on fresh real batches the set has not been fitted to) over the last
quarter of the run, and the time per step. No test split is read, so nothing is selected on one.

    python scripts/boost_sweep.py --root data --teacher runs/cifar10/teacher_cpu.safetensors \
        --budget 50 --steps 150 --json reports/boost_sweep.jsonl

Runs already in the JSON file (same name and settings) are skipped, so a killed sweep continues.
"""
import argparse
import json
import time
from pathlib import Path

import torch

from distill.data import load_source
from distill.data.config import DataConfig
from distill.methods import DistillConfig, run_distillation
from distill.ssl import Teacher

BASE = dict(pool_arch="convnet-32-64-128-bn", pool_size=4, pool_steps=100, real_batch=256, lr_images=1e-2,
            lr_targets=1e-2, lr_nets=1e-2, images_ratio=2.0, basis_size=16, net_hidden=4)
RUNS = {
    "default (lr 1e-2, M = 2N, h 16, H 4)": {},
    "lr 3e-3": dict(lr_images=3e-3, lr_targets=3e-3, lr_nets=3e-3),
    "lr 3e-2": dict(lr_images=3e-2, lr_targets=3e-2, lr_nets=3e-2),
    "M = N": dict(images_ratio=1.0),
    "M = 4N": dict(images_ratio=4.0),
    "bases 8 x 8": dict(basis_size=8),
    "MLP width 16": dict(net_hidden=16),
    "stored view codes": dict(view_targets="stored"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="data")
    ap.add_argument("--dataset", default="cifar100")
    ap.add_argument("--train-per-class", type=int, default=50)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--only", nargs="*", help="names of RUNS to run (default: all)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="reports/boost_sweep.jsonl")
    args = ap.parse_args()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done[(r["name"], json.dumps(r["params"], sort_keys=True), r["budget"], r["steps"])] = r
    src = load_source(DataConfig(name=args.dataset, root=args.root), args.train_per_class)
    teacher = Teacher.load(args.teacher)
    for name, change in RUNS.items():
        if args.only and name not in args.only:
            continue
        params = {**BASE, **change}
        key = (name, json.dumps(params, sort_keys=True), args.budget, args.steps)
        if key in done:
            print(f"{name:<40} done before: loss {done[key]['loss']:.5f}")
            continue
        cfg = DistillConfig(data=DataConfig(name=args.dataset), method="boost", budget=args.budget, steps=args.steps,
                            seed=0, device=args.device, output=None, checkpoint_every=0, log_every=1, params=params)
        torch.manual_seed(0)
        t0 = time.time()
        res = run_distillation(cfg, teacher=teacher, source=src, quiet=True)
        losses = [h["loss"] for h in res.history]
        tail = losses[-max(1, len(losses) // 4):]
        b = res.set.meta["boost"]
        row = dict(name=name, params=params, budget=args.budget, steps=args.steps, loss=sum(tail) / len(tail),
                   first_loss=sum(losses[:10]) / len(losses[:10]), seconds=round(time.time() - t0, 1),
                   image_equivalents=round(res.set.image_equivalents(), 2), images=b["images"],
                   image_bases=b["image_bases"], target_bases=b["target_bases"], device=str(res.set.images.device
                   if res.set.images is not None else res.set.image_coeffs.device))
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name:<40} loss {row['loss']:.5f} (first 10 steps {row['first_loss']:.5f}), M {b['images']}, "
              f"U {b['image_bases']}, V {b['target_bases']}, {row['image_equivalents']} image-eq., {row['seconds']:.0f}s",
              flush=True)


if __name__ == "__main__":
    main()
