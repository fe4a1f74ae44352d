#!/usr/bin/env python
"""Time per KRR-ST outer step and peak memory at the CIFAR-100 setting.

    python scripts/bench_krrst.py --device cpu --steps 3            # this machine
    python scripts/bench_krrst.py --device cuda --steps 50          # a GPU

Setting (METHODS.md): N = 1000 synthetic images, real batch 1024 with crop+flip, pool of
ConvNet-3 (128-256-512, BN), ResNet-18 (CIFAR stem) teacher, 32 px, 100-class-sized data. The
teacher is randomly initialised and the "real" data is random uint8 noise of CIFAR-100's size:
speed and memory do not depend on either. Pool initialisation (up to 1000 steps per model) is
excluded from the timing (``pool_steps`` is set so the pool starts young); reported: median and
mean seconds per outer step after ``--warmup`` steps, and peak memory (CUDA allocator peak on a
GPU, process max RSS on the CPU).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import torch

from distill.data import ImageSet
from distill.engine import resolve_device, seed_everything
from distill.methods import DistillContext
from distill.methods.krr_st import KRRST, Config
from distill.models import create_model
from distill.ssl.teacher import Teacher


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--real-batch", type=int, default=1024)
    ap.add_argument("--pool-arch", default="convnet-128-256-512-bn")
    ap.add_argument("--teacher", default="resnet18")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    seed_everything(0)
    n_real = 50_000
    src = ImageSet(images=torch.randint(0, 256, (n_real, 3, 32, 32), dtype=torch.uint8),
                   labels=torch.arange(n_real) % 100, classes=[str(i) for i in range(100)], name="noise-cifar100",
                   split="train", mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)).to(device)
    net = create_model(args.teacher, out_dim=0, image_size=32, mean=src.mean, std=src.std)
    teacher = Teacher(net, {"backbone": args.teacher, "image_size": 32, "mean": list(src.mean), "std": list(src.std)}).to(device)
    if device.type == "cuda":
        teacher.model.to(memory_format=torch.channels_last)
    ctx = DistillContext(source=src, teacher=teacher, budget=args.budget, steps=160_000, device=device, seed=0,
                         amp=not args.no_amp)
    method = KRRST(Config(pool_arch=args.pool_arch, pool_size=10, pool_steps=2, real_batch=args.real_batch), ctx)
    method.setup(fresh=True)  # pool_steps=2: each model starts with one step (init cost excluded)
    method.cfg.pool_steps = 1000
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for s in range(args.warmup + args.steps):
        t = time.perf_counter()
        loss = method.step(s)["loss"].item()  # .item() syncs, so the step is fully timed
        times.append(time.perf_counter() - t)
        print(f"step {s}: {times[-1]:.3f}s loss {loss:.4f}", flush=True)
    timed = times[args.warmup:]
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    cpu = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    res = {"device": torch.cuda.get_device_name() if device.type == "cuda" else cpu,
           "budget": args.budget, "real_batch": args.real_batch, "pool_arch": args.pool_arch, "teacher": args.teacher,
           "amp": not args.no_amp and device.type == "cuda", "steps_timed": len(timed),
           "median_s_per_step": round(statistics.median(timed), 4), "mean_s_per_step": round(statistics.fmean(timed), 4),
           "peak_memory_gib": round(peak, 3),
           "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
           "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(res))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
