#!/usr/bin/env python
"""Time per SC-DD recover iteration and peak memory, for the settings of the paper's scales.

    python scripts/bench_scdd.py --device cpu --iters 20                 # this machine
    python scripts/bench_scdd.py --device cuda --iters 100 --scales all  # a GPU

One iteration = jitter + forward through the frozen classifier + CE + BatchNorm-statistics loss +
backward into the images + Adam step + clip: ``SCDD.step`` itself, on a randomly initialised
classifier of the given architecture (speed and memory do not depend on the weights). Scales:

* ``cifar``: the CPU teacher's ConvNet (convnet-32-64-128-bn), 100 images of 32 px (one CIFAR-100
  batch: every class once);
* ``cifar-resnet18``: the reference's CIFAR-100 backbone (ResNet-18, CIFAR stem), 100 images of 32 px;
* ``imagenet``: ResNet-18 (ImageNet stem) at 224 px, 100 images, with flip and a random resized crop
  (the reference's ImageNet recover).

Reported: median seconds per iteration after ``--warmup`` iterations, images per second, and peak
memory (CUDA: allocator peak; CPU: process max RSS, which includes the interpreter and torch).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from distill.data import ImageSet
from distill.engine import resolve_device, seed_everything
from distill.engine.device import describe_precision, machine_name
from distill.engine.logging import emit_row
from distill.methods import DistillContext
from distill.methods.scdd import SCDD, Config
from distill.methods.scdd.squeeze import classifier_from_backbone
from distill.models import create_model
from distill.ssl.teacher import Teacher

SCALES = {"cifar": ("convnet-32-64-128-bn", 32, 100, False), "cifar-resnet18": ("resnet18", 32, 100, False),
          "imagenet": ("resnet18", 224, 100, True)}


def bench(scale: str, device, iters: int, warmup: int, amp: str) -> dict:
    arch, size, classes, imagenet = SCALES[scale]
    seed_everything(0)
    n = classes
    src = ImageSet(torch.zeros(n, 3, size, size, dtype=torch.uint8), torch.arange(n), [str(c) for c in range(n)],
                   name="bench", split="train", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).to(device)
    body = create_model(arch, out_dim=0, image_size=size, mean=src.mean, std=src.std)
    teacher = Teacher(body, {"arch": arch, "image_size": size, "channels": 3, "mean": list(src.mean),
                             "std": list(src.std), "source": "bench"})
    head = torch.nn.Linear(teacher.dim, n)
    clf = classifier_from_backbone(teacher, head, src, {})
    clf_file = Path(tempfile.mkdtemp()) / "classifier.safetensors"
    clf.save(clf_file)
    params = {"classifier": str(clf_file), "class_batch": 0, "lr": 0.25 if imagenet else 0.4,
              "r_bn": 0.01 if imagenet else 0.005, "jitter": 32 if imagenet else 4, "flip": imagenet,
              "crop_scale": [0.08, 1.0] if imagenet else None}
    method = SCDD(Config(**params), DistillContext(source=src, teacher=None, budget=n, steps=iters + warmup,
                                                   device=device, amp=amp))
    method.setup()
    shutil.rmtree(clf_file.parent)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(iters + warmup):
        sync()
        t = time.perf_counter()
        method.step(i)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    med = statistics.median(times)
    return {"bench": "scdd_recover", "scale": scale, "arch": arch, "image_size": size, "batch": n,
            "s_per_iter": round(med, 5), "images_per_s": round(n / med, 1), "peak_mib": round(peak, 1),
            "peak_kind": "cuda allocator" if device.type == "cuda" else "process max RSS",
            "iters": iters, "device": machine_name(device), "precision": describe_precision(device, amp),
            "torch": torch.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--scales", default="cifar,cifar-resnet18", help="comma list of cifar, cifar-resnet18, imagenet; or all")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--amp", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="append each result as one JSON line to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    scales = list(SCALES) if args.scales == "all" else args.scales.split(",")
    print("| scale | classifier | batch | s / iteration | images / s | peak MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for s in scales:
        r = bench(s, device, args.iters, args.warmup, args.amp)
        print(f"| {s} | {r['arch']} @ {r['image_size']} px | {r['batch']} | {r['s_per_iter']:.4f} | "
              f"{r['images_per_s']:.0f} | {r['peak_mib']:.0f} ({r['peak_kind']}) |", flush=True)
        if args.json:
            emit_row(r, args.json)
    print(f"device: {machine_name(device)}, {describe_precision(device, args.amp)}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
