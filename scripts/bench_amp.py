#!/usr/bin/env python
"""fp32 versus bf16 autocast (+ channels_last) for a ConvNet-3 (BN) forward+backward, side by side.

    python scripts/bench_amp.py --device cpu --repeats 5 --json docs/bench/amp.jsonl

Interleaves the two settings (fp32, bf16, fp32, bf16, ...) on one machine in one run, reports the
median seconds of each and their ratio, and what ``amp: auto`` picks on this machine (bf16 on CUDA
and on CPUs with AMX / AVX512-BF16 units, fp32 elsewhere).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from distill.engine.device import amp_dtype, autocast, describe_precision, machine_name, resolve_device
from distill.engine.logging import emit_row
from distill.models import create_model


def one(net, x, y, device, amp):
    t = time.perf_counter()
    with autocast(device, amp):
        out = net(x)
    loss = F.cross_entropy(out.float(), y)
    net.zero_grad(set_to_none=True)
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", default="convnet-128-256-512-bn")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    nets = {"fp32": create_model(args.arch, out_dim=10, image_size=32).to(device),
            "bf16": create_model(args.arch, out_dim=10, image_size=32).to(device).to(memory_format=torch.channels_last)}
    xs = {"fp32": x, "bf16": x.contiguous(memory_format=torch.channels_last)}
    amps = {"fp32": "off", "bf16": "bf16"}
    for k in nets:  # warm-up
        one(nets[k], xs[k], y, device, amps[k])
    times = {k: [] for k in nets}
    for _ in range(args.repeats):
        for k in nets:
            times[k].append(one(nets[k], xs[k], y, device, amps[k]))
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"device": machine_name(device), "arch": args.arch, "batch": args.batch, "repeats": args.repeats,
           "fp32_s": round(med["fp32"], 4), "bf16_s": round(med["bf16"], 4),
           "bf16_over_fp32": round(med["bf16"] / med["fp32"], 3),
           "auto_picks": "bf16" if amp_dtype(device, "auto") is not None else "fp32",
           "auto_says": describe_precision(device, "auto"), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    emit_row(res, args.json)


if __name__ == "__main__":
    main()
