#!/usr/bin/env python
"""Time per KRR-ST outer step and peak memory at the CIFAR-100 setting.

    python scripts/bench_krrst.py --device cpu --steps 3            # this machine
    python scripts/bench_krrst.py --device cuda --steps 50          # a GPU
    python scripts/bench_krrst.py --reference .ref/selfsup_dd ...  # and the authors' code, same run

``--compare-backward`` interleaves this release's outer backward (into the synthetic images and
targets only) with release 0.1's (which also computed the pool model's weight gradients), on the
same evolving state, and reports both medians and their ratio.

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
import resource
import statistics
import time

import torch

from distill.data import ImageSet
from distill.engine import channels_last, resolve_device, seed_everything
from distill.engine.device import describe_precision, machine_name
from distill.methods import DistillContext
from distill.methods.krr_st import KRRST, Config
from distill.engine.logging import emit_row
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
    ap.add_argument("--amp", default="auto", help="auto | bf16 | off (the engine's precision policy)")
    ap.add_argument("--compare-backward", action="store_true",
                    help="interleave steps whose outer backward reaches only images and targets (this release) with "
                         "steps that also compute the pool model's weight gradients (release 0.1), same state")
    ap.add_argument("--reference", default=None,
                    help="folder of the KRR-ST authors' code (db-Lee/selfsup_dd, kept out of git): time its outer step "
                         "in the same run, same settings, and report the ratio")
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
    teacher = Teacher(net, {"arch": args.teacher, "image_size": 32, "mean": list(src.mean), "std": list(src.std)}).to(device)
    channels_last(teacher.model, device, args.amp)
    ctx = DistillContext(source=src, teacher=teacher, budget=args.budget, steps=160_000, device=device, seed=0,
                         amp=args.amp)
    method = KRRST(Config(pool_arch=args.pool_arch, pool_size=10, pool_steps=2, real_batch=args.real_batch), ctx)
    method.setup(fresh=True)  # pool_steps=2: each model starts with one step (init cost excluded)
    method.cfg.pool_steps = 1000
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    import distill.methods.krr_st as krr_mod
    new_update = krr_mod.update

    def full_backward(loss, opt, sched=None, inputs=None, zero_grad=True, **kw):   # release 0.1: loss.backward()
        return new_update(loss, opt, sched, None, zero_grad, **kw)

    times, times_full = [], []
    for s in range(args.warmup + args.steps):
        for variant in (("inputs", "full") if args.compare_backward else ("inputs",)):
            krr_mod.update = new_update if variant == "inputs" else full_backward
            t = time.perf_counter()
            loss = method.step(s)["loss"].item()  # .item() syncs, so the step is fully timed
            (times if variant == "inputs" else times_full).append(time.perf_counter() - t)
            print(f"step {s} ({variant} backward): {time.perf_counter() - t:.3f}s loss {loss:.4f}", flush=True)
    krr_mod.update = new_update
    timed = times[args.warmup:]
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    res = {"device": machine_name(device),
           "budget": args.budget, "real_batch": args.real_batch, "pool_arch": args.pool_arch, "teacher": args.teacher,
           "precision": describe_precision(device, args.amp), "steps_timed": len(timed),
           "median_s_per_step": round(statistics.median(timed), 4), "mean_s_per_step": round(statistics.fmean(timed), 4),
           "peak_memory_gib": round(peak, 3),
           **({"full_backward_median_s": round(statistics.median(times_full[args.warmup:]), 4),
               "full_over_inputs": round(statistics.median(times_full[args.warmup:]) / statistics.median(timed), 3)}
              if args.compare_backward else {}),
           "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
           "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    if args.reference:
        ref = reference_steps(args, src, device)
        res.update(ref)
        res["reference_over_ours"] = round(ref["reference_median_s_per_step"] / res["median_s_per_step"], 3)
    emit_row(res, args.json)


def reference_steps(args, src, device) -> dict:
    """The reference implementation's outer step (its ModelPool and algorithms/distill.run), fp32 as it
    is written, on the same data, N, real batch, pool architecture, teacher architecture and augmentation."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    from distill.data.augment import CropFlip
    root = Path(args.reference)
    if not (root / "model_pool.py").exists():
        raise SystemExit(f"--reference {root}: no model_pool.py there (clone db-Lee/selfsup_dd into it)")
    sys.path.insert(0, str(root))
    from algorithms import distill as ref_distill   # noqa: E402  (the reference's own modules)
    from model_pool import ModelPool
    from models.wrapper import get_model
    def ref_name(ours: str) -> str:      # convnet-128-256-512-bn -> convnet_128_256_512_bn; resnet18 as is
        parts = ours.split("-")
        if ours == "resnet18":
            return ours
        if parts[0] != "convnet" or parts[-1] not in ("bn", "in") or not all(p.isdigit() for p in parts[1:-1]):
            raise SystemExit(f"--reference supports resnet18 and convnet-W1-...-bn|in, not {ours}")
        return "convnet_" + "_".join(parts[1:])
    seed_everything(0)
    target = get_model(ref_name(args.teacher), (3, 32, 32), 10)
    target.fc = torch.nn.Identity()
    target = target.to(device)
    with torch.no_grad():
        dim = target.eval()(src.float(torch.arange(2, device=device))).shape[1]
    ns = SimpleNamespace(online_iteration=1000, num_models=10, train_model=ref_name(args.pool_arch),
                         online_opt="sgd", online_lr=0.1, online_wd=1e-3, img_shape=(3, 32, 32),
                         num_pretrain_classes=dim, outer_grad_norm=0.0)
    pool = ModelPool(ns, device)
    mean = torch.tensor(src.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(src.std, device=device).view(1, -1, 1, 1)
    idx = torch.randperm(len(src), device=device)[:args.budget]
    x_syn = ((src.float(idx) - mean) / std).clone().requires_grad_(True)
    y_syn = torch.randn(args.budget, dim, device=device).requires_grad_(True)
    outer_opt = torch.optim.AdamW([x_syn, y_syn], lr=1e-4, weight_decay=0.0)
    aug = CropFlip(32, 4)

    def batches():
        while True:
            b = torch.randperm(len(src), device=device)[:args.real_batch]
            yield (src.float(b) - mean) / std, None
    it = batches()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for s in range(args.warmup + args.steps):
        t = time.perf_counter()
        loss = float(ref_distill.run(ns, device, target, pool, outer_opt, it, aug, x_syn, y_syn))
        times.append(time.perf_counter() - t)
        print(f"reference step {s}: {times[-1]:.3f}s loss {loss:.4f}", flush=True)
    timed = times[args.warmup:]
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"reference": "db-Lee/selfsup_dd (fp32, as written)", "reference_median_s_per_step": round(statistics.median(timed), 4),
            "reference_peak_memory_gib": round(peak, 3)}


if __name__ == "__main__":
    main()
