#!/usr/bin/env python
"""Scaling on paper and on this CPU: docs/SCALING.md.

    python scripts/scaling.py model                      # the 1-8 GPU / 2-node table (markdown)
    python scripts/scaling.py model --docs docs/SCALING.md
    python scripts/scaling.py measure --json F           # one process: KRR-ST and teacher steps at CPU size
    torchrun --standalone --nproc_per_node 2 scripts/scaling.py measure --json F    # the same on 2 processes
    python scripts/scaling.py report --json F --docs docs/SCALING.md                 # their table

``model`` counts each stage's FLOPs per step at the paper setting (torch's FlopCounterMode on meta
tensors: nothing runs), splits them into the part that is sharded over ranks and the part every rank
repeats, converts FLOPs to seconds with the rate the H100 actually reached on the KRR-ST outer step
(docs/BENCHMARKS.md section 1: 0.0533 s per step, bf16), adds a ring all-reduce of each step's
gradient volume, and reports T(1) / (W T(W)). The assumptions are printed with the table.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: measured: one KRR-ST outer step at the paper's CIFAR-100 setting on an H100, bf16 (BENCHMARKS section 1)
H100_KRRST_STEP_S = 0.0533
#: assumed all-reduce bus bandwidths (NCCL busbw) and per-hop latencies
BUS = {"NVLink (1 node)": (360e9, 10e-6), "2 nodes, 400 Gb/s InfiniBand": (45e9, 20e-6)}


def flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def net(arch: str, out_dim: int = 0):
    from distill.models import create_model
    return create_model(arch, out_dim=out_dim, image_size=32).to("meta")


def per_image(arch: str, out_dim: int = 0, backward: str = "none", body: bool = False) -> float:
    """FLOPs per 32 px image: forward, + backward to the input only ('input'), or + full backward ('full')."""
    m = net(arch, out_dim)
    x = torch.empty(4, 3, 32, 32, device="meta", requires_grad=backward == "input")
    if backward == "input":
        for p in m.parameters():
            p.requires_grad_(False)

    def run():
        y = m.body(x) if body else (m(x) if out_dim else m.embed(x))
        if backward != "none":
            y.float().sum().backward()
    return flops(run) / 4


def stage_costs() -> dict[str, dict]:
    """Per step at the paper settings: FLOPs sharded over ranks, FLOPs every rank repeats, bytes all-reduced."""
    out = {}
    # teacher: Barlow Twins, ResNet-18 (CIFAR stem), projector 512-2048-2048-2048, batch 256, two views
    b, d = 256, 2048
    res = per_image("resnet18", backward="full")
    proj = 2 * 3 * (512 * d + d * d + d * d)
    params = 11_168_832 + (512 * d + d * d + d * d) + 4 * d
    out["teacher"] = dict(setting="Barlow Twins ResNet-18, batch 256, projector 2048x3", par=2 * b * (res + proj), rep=0.0,
                          bytes=4 * params + 4 * d * d, note="DDP gradients + the summed 2048x2048 cross-correlation")
    # KRR-ST: N = 1000 synthetic, real batch 1024, ConvNet-128-256-512-BN pool, ResNet-18 teacher, 512-d targets
    n, b, p = 1000, 1024, 8192 + 1
    teacher_f = per_image("resnet18")
    pool_fwd = per_image("convnet-128-256-512-bn", 512, body=True)
    pool_in = per_image("convnet-128-256-512-bn", 512, backward="input", body=True)
    pool_step = per_image("convnet-128-256-512-bn", 512, backward="full")
    real = b * (teacher_f + pool_fwd) + 2 * (2 * b * n * p)           # K_ts and its backward belong to the real rows
    synthetic = n * pool_in + n * pool_step                            # outer forward/backward + the pool's own step
    kernel = 3 * (2 * n * n * p) + n ** 3 / 3                          # K_ss, its backward, the Cholesky solve
    set_grads = 4 * (n * 3 * 32 * 32 + n * 512)
    pool_params = sum(t.numel() for t in net("convnet-128-256-512-bn", 512).parameters())
    out["krr_st"] = dict(setting="N 1000, real batch 1024, ConvNet-3 pool, ResNet-18 teacher, both sides sharded",
                         par=real + synthetic, rep=kernel, bytes=set_grads + 1.5 * 4 * n * p + 4 * pool_params,
                         note="gathered N x P features (+ their gradient), the set's and the pool model's gradients")
    out["krr_st, real batch sharded only (first design)"] = dict(
        setting="as above, the synthetic side repeated on every rank", par=real, rep=synthetic + kernel,
        bytes=set_grads, note="the set's gradients")
    return out


def efficiency(par: float, rep: float, nbytes: float, world: int, rate: float, bus: tuple[float, float]) -> float:
    t1 = (par + rep) / rate
    bw, lat = bus
    comm = 0.0 if world == 1 else nbytes * 2 * (world - 1) / world / bw + 2 * (world - 1) * lat
    return t1 / (world * ((par / world + rep) / rate + comm))


def model_markdown() -> str:
    costs = stage_costs()
    k = costs["krr_st"]     # the measured step: one process, so the split does not matter
    rate = (k["par"] + k["rep"]) / H100_KRRST_STEP_S
    worlds = (1, 2, 4, 8)
    lines = [f"Effective rate: {rate / 1e12:.1f} TFLOP/s = the KRR-ST step's FLOPs / its measured {H100_KRRST_STEP_S} s on "
             "an H100 (bf16), applied to every stage. All-reduce: ring, no overlap with compute, bus bandwidth "
             + "; ".join(f"{name} {bw / 1e9:.0f} GB/s, {lat * 1e6:.0f} us per hop" for name, (bw, lat) in BUS.items())
             + ". Efficiency = T(1) / (W x T(W)).", "",
             "| stage (per step) | GFLOP sharded | GFLOP repeated on every rank | all-reduce MB | "
             + " | ".join(f"W={w}" for w in worlds) + " | 16 GPUs (2 nodes) |",
             "|---|---:|---:|---:|" + "---:|" * (len(worlds) + 1)]
    nv, ib = BUS["NVLink (1 node)"], BUS["2 nodes, 400 Gb/s InfiniBand"]
    for name, c in costs.items():
        effs = [efficiency(c["par"], c["rep"], c["bytes"], w, rate, nv) for w in worlds]
        e16 = efficiency(c["par"], c["rep"], c["bytes"], 16, rate, ib)
        lines.append(f"| {name}: {c['setting']} | {c['par'] / 1e9:,.0f} | {c['rep'] / 1e9:,.0f} | {c['bytes'] / 1e6:.1f} | "
                     + " | ".join(f"{e:.0%}" for e in effs) + f" | {e16:.0%} |")
    return "\n".join(lines)


#: measured on an H100 (docs/BENCHMARKS.md sections 10 and 14)
H100_MKDT_ITER_S = 0.563          # N 1000, 40 unroll steps of batch 256, 512-d targets, fp32
H100_SCDD_ITER_S = 0.0149         # ResNet-18 classifier, a batch of 100 images, 32 px


def split_markdown() -> str:
    """Stages whose work is split into independent units: efficiency = units / (W x ceil(units / W)),
    and MKDT, whose ranks each unroll their own trajectory (one all-reduce per iteration)."""
    worlds = (2, 4, 8, 16)

    def balance(units: int, w: int) -> float:
        return units / (w * math.ceil(units / w))
    rows = [("SC-DD recover, CIFAR-100 IPC 10, class_batch 100", 10), ("SC-DD recover, CIFAR-100 IPC 50, class_batch 100", 50),
            ("SC-DD recover, ImageNet-1k IPC 10, class_batch 100", 100), ("MKDT experts: 100 trajectories", 100),
            ("evaluation: 5 sets x 3 seeds", 15), ("evaluation: 2 sets x 3 seeds", 6)]
    lines = ["| stage: units of work | units | " + " | ".join(f"W={w}" for w in worlds) + " |",
             "|---|---:|" + "---:|" * len(worlds)]
    for name, units in rows:
        lines.append(f"| {name} | {units} | " + " | ".join(f"{balance(units, w):.0%}" for w in worlds) + " |")
    nbytes = 4 * (1000 * 3 * 32 * 32 + 1000 * 512 + 1)
    effs = []
    for w in worlds:
        bw, lat = BUS["NVLink (1 node)"] if w <= 8 else BUS["2 nodes, 400 Gb/s InfiniBand"]
        comm = nbytes * 2 * (w - 1) / w / bw + 2 * (w - 1) * lat
        effs.append(H100_MKDT_ITER_S / (H100_MKDT_ITER_S + comm))
    lines.append(f"| MKDT distillation: one unroll per rank ({H100_MKDT_ITER_S} s on an H100), "
                 f"{nbytes / 1e6:.1f} MB all-reduced | - | " + " | ".join(f"{e:.0%}" for e in effs) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- measured on this machine


def measure(args) -> None:
    from distill.data import ImageSet
    from distill.data.config import DataConfig
    from distill.engine import dist, seed_everything
    from distill.methods.base import DistillContext
    from distill.methods.krr_st import KRRST, Config
    from distill.models import create_model
    from distill.ssl.teacher import Teacher
    from distill.ssl.train import TeacherConfig, TeacherStage
    dist.init_distributed("cpu")
    torch.set_num_threads(args.threads)
    seed_everything(0)
    dev = torch.device("cpu")
    n = 5000
    src = ImageSet(images=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), labels=torch.arange(n) % 10,
                   classes=[str(i) for i in range(10)], name="noise", split="train", mean=(0.5,) * 3, std=(0.25,) * 3)
    rows = {}
    t_net = create_model("convnet-32-64-128-bn", out_dim=0, image_size=32)
    teacher = Teacher(t_net, {"arch": "convnet-32-64-128-bn", "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3})
    ctx = DistillContext(source=src, teacher=teacher, budget=args.budget, steps=1000, device=dev, seed=0, amp="off")
    m = KRRST(Config(pool_arch="convnet-32-64-128-bn", pool_size=2, pool_steps=2, real_batch=args.real_batch), ctx)
    m.setup()
    rows["krr_st"] = _time(lambda i: m.step(i), args.steps)
    for key, sync in (("teacher", True), ("teacher_no_sync_bn", False)):
        cfg = TeacherConfig(data=DataConfig(name="noise"), backbone="convnet-32-64-128-bn", ssl="barlow_twins",
                            projector_hidden=512, projector_dim=512, batch_size=args.teacher_batch, epochs=1,
                            device="cpu", amp="off", sync_bn=sync)
        stage = TeacherStage(cfg, src, dev)
        stage.setup()
        rows[key] = _time(lambda i: stage.step(i), args.steps)
    if dist.is_main():
        row = {"processes": dist.world_size(), "threads_each": args.threads, "steps": args.steps, "budget": args.budget,
               "real_batch": args.real_batch, "teacher_batch": args.teacher_batch, **rows,
               "date": time.strftime("%Y-%m-%d")}
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")


def measured_markdown(path: str) -> str:
    """The table of docs/SCALING.md from the rows ``measure --json`` appended (the last row of each run kind)."""
    rows = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        rows[(r["processes"], r["threads_each"])] = r
    one, two_threads, two = rows[(1, 1)], rows[(1, 2)], rows[(2, 1)]
    keys = [("krr_st", "KRR-ST s/step"), ("teacher", "teacher s/step"),
            ("teacher_no_sync_bn", "teacher, `sync_bn: false`")]
    lines = [f"Median seconds per step of {one.get('steps', '?')} (after 1 warm-up), {one['date']}, fp32. KRR-ST: "
             f"N = {one['budget']}, real batch {one['real_batch']}, ConvNet-32-64-128-BN pool and teacher. Teacher: "
             f"Barlow Twins, ConvNet-32-64-128-BN, projector 512 x 3, batch {one['teacher_batch']} (global). Raw "
             f"rows: `{path}`.", "",
             "| run | " + " | ".join(t for _, t in keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, r in (("1 process, 1 thread", one), ("1 process, 2 threads", two_threads),
                    ("2 processes (torchrun, gloo), 1 thread each", two)):
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k, _ in keys) + " |")
    for name, base in (("2 processes over 1 process x 1 thread", one),
                       ("2 processes over 1 process x 2 threads (same cores)", two_threads)):
        lines.append(f"| {name} | " + " | ".join(f"{base[k] / two[k]:.2f}x" for k, _ in keys) + " |")
    return "\n".join(lines)


def _time(step, steps: int, warm: int = 1) -> float:
    from distill.engine import dist
    times = []
    for i in range(warm + steps):
        dist.barrier()
        t = time.perf_counter()
        float(step(i)["loss"])
        dist.barrier()
        times.append(time.perf_counter() - t)
    return round(sorted(times[warm:])[len(times[warm:]) // 2], 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("model")
    m.add_argument("--docs", default=None)
    s = sub.add_parser("measure")
    s.add_argument("--budget", type=int, default=100)
    s.add_argument("--real-batch", type=int, default=512)
    s.add_argument("--teacher-batch", type=int, default=256)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--json", default=None)
    r = sub.add_parser("report", help="the measured table from the rows of `measure --json`")
    r.add_argument("--json", required=True)
    r.add_argument("--docs", default=None)
    args = ap.parse_args()
    if args.cmd == "measure":
        measure(args)
        return
    from distill.engine.files import write_block
    text, tag = ((model_markdown() + "\n\n" + split_markdown(), "scaling:model") if args.cmd == "model"
                 else (measured_markdown(args.json), "scaling:measured"))
    print(text)
    if args.docs:
        print(f"updated {write_block(args.docs, tag, text)}")


if __name__ == "__main__":
    main()
