#!/usr/bin/env python
"""DP-SGD step time and memory: opacus' per-example gradients ("hooks") against its fast gradient clipping
("ghost", the privacy audit's default), side by side on the audit's DP student.

    python scripts/bench_dp.py                                   # print the table
    python scripts/bench_dp.py --docs docs/BENCHMARKS.md         # and write it into the docs (block dp-step)

The student is the privacy preset's: `convnet-32-64-128-bn` with BatchNorm replaced by GroupNorm (opacus'
ModuleValidator.fix) and a head onto the teacher's 2048-d representation, trained by the audit's loss (squared error
summed over dimensions, averaged over the batch) at batch 256, clipped at norm 1 with noise multiplier 1 (the cost
of a step does not depend on either) and fixed-size batches in place of the audit's Poisson sampling, so that every
timed step has the same batch. Each mode
runs in its own process (so that its peak resident memory is its own), in alternating blocks (the same machine load
for both); reported: the median seconds of a whole step (forward, backward(s), clip, noise, update) and the peak
resident set size of the process. The update itself is the same in both modes (tests/test_privacy.py). Ghost
clipping takes two backward passes, so it pays only where per-example gradients are large (the 2048-d head; with
a 64-d head and batch 16 it was slower in a smoke run).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(mode: str, steps: int, batch: int, dim: int, threads: int) -> dict:
    import torch
    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT))
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    from applications.privacy.dp import SquaredError, make_dp_compatible, make_private
    from distill.models import create_model
    torch.manual_seed(0)
    net = make_dp_compatible(create_model("convnet-32-64-128-bn", out_dim=dim, image_size=32, in_chans=3))
    n = batch * (steps + 1)
    data = TensorDataset(torch.rand(n, 3, 32, 32), torch.randn(n, dim))
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    loader = DataLoader(data, batch_size=batch, shuffle=True)
    engine = PrivacyEngine(accountant="rdp", secure_mode=False)
    model, opt, crit, loader = make_private(engine, net, opt, loader, SquaredError(), mode, noise_multiplier=1.0,
                                            max_grad_norm=1.0, poisson_sampling=False)
    times = []
    for x, y in loader:
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        crit(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t)
        if len(times) == steps:
            break
    return {"mode": mode, "times": times, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="steps per block (the first of each block is dropped)")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=2048, help="the head's output: the teacher's representation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--docs", help="write the table into this Markdown file (block dp-step)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.steps, a.batch, a.dim, a.threads)))
        return
    res: dict[str, dict] = {}
    for _ in range(a.blocks):
        for mode in ("hooks", "ghost"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(a.steps), "--batch",
                                  str(a.batch), "--dim", str(a.dim), "--threads", str(a.threads)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            e = res.setdefault(mode, {"times": [], "peak_mib": 0.0})
            e["times"] += r["times"][1:]
            e["peak_mib"] = max(e["peak_mib"], r["peak_mib"])
            print(f"  {mode}: {statistics.median(r['times'][1:]):.2f} s/step, peak {r['peak_mib']:.0f} MiB", flush=True)
    med = {m: statistics.median(e["times"]) for m, e in res.items()}
    lines = ["| opacus mode | s / step (median) | peak resident MiB | steps timed |", "|---|---:|---:|---:|"]
    for m, e in res.items():
        lines.append(f"| {m} | {med[m]:.2f} | {e['peak_mib']:.0f} | {len(e['times'])} |")
    lines += ["", f"Fast gradient clipping against per-example gradients: **{med['hooks'] / med['ghost']:.1f}x** "
                  f"faster per step, {res['hooks']['peak_mib'] / res['ghost']['peak_mib']:.1f}x less peak memory "
                  f"(DP student `convnet-32-64-128-bn` + GroupNorm, {a.dim}-d head, batch {a.batch}, fp32, "
                  f"{a.threads} threads; {a.blocks} alternating blocks of {a.steps} steps, the first of each "
                  f"dropped; each mode in its own process)."]
    table = "\n".join(lines)
    print(table)
    if a.docs:
        from distill.engine.files import write_block
        from distill.engine.provenance import provenance
        cmd = " ".join(["python scripts/bench_dp.py", *sys.argv[1:]])
        print(f"updated {write_block(a.docs, 'dp-step', table, provenance(cmd, amp='off'))}")   # DP runs in fp32


if __name__ == "__main__":
    main()
