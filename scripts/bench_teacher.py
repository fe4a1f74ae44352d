"""Where a teacher step's time goes, and the epoch time before/after a change, side by side in one run.

    python scripts/bench_teacher.py --root data            # CIFAR-10, the CPU teacher preset
    python scripts/bench_teacher.py --steps 20 amp=off     # what a CPU without bf16 units runs

Parts of one SimCLR step (median of --repeats): fetching the uint8 batch, the two augmented views, the
backbone + projector forward and backward (eager and torch.compile'd), the optimizer step. Then whole
steps of the preset as it was (eager) and with ``compile=true``, alternating in blocks of --steps so
that both see the same machine load; the epoch time is the median step x steps per epoch. One JSON row
per run is appended to docs/bench/teacher_step.jsonl.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill.config import load_config, resolved  # noqa: E402
from distill.data import load_dataset  # noqa: E402
from distill.engine import autocast, resolve_device, seed_everything  # noqa: E402
from distill.engine.device import cpu_has_bf16_units, describe_precision, full_precision  # noqa: E402
from distill.ssl.train import TeacherConfig, TeacherStage  # noqa: E402


def median_time(fn, n: int) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/teacher/cifar10_cpu.yaml")
    p.add_argument("--root", default=None, help="CIFAR root (default: the embedded sample, same step cost)")
    p.add_argument("--steps", type=int, default=20, help="steps per block of the side-by-side run")
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=str(ROOT / "docs/bench/teacher_step.jsonl"))
    p.add_argument("--docs", help="only write the table of every recorded row into this Markdown file and exit")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.docs:
        write_docs(args.docs, args.out)
        return
    base = ["data.root=" + args.root] if args.root else ["data.name=sample"]
    dev = resolve_device("cpu")
    data = None
    stages = {}
    for variant in ("eager", "compiled"):
        cfg = resolved(load_config(TeacherConfig, args.config, base + args.overrides + [f"compile={variant == 'compiled'}"]))
        seed_everything(0)
        data = data or load_dataset(cfg.data.name, cfg.data.root, "train", None, device=dev)
        stages[variant] = TeacherStage(cfg, data, dev)
    cfg = resolved(load_config(TeacherConfig, args.config, base + args.overrides))
    spe = len(load_dataset(cfg.data.name, cfg.data.root, "train", None)) // cfg.batch_size if args.root else 50000 // cfg.batch_size

    # -- parts of one step
    st = stages["eager"]
    idx = st.batches(0)
    x = st.train.float(idx)
    v1, v2 = st.views(x)

    def fwd_bwd(stage):
        def run():
            with autocast(dev, stage.cfg.amp):
                z1, z2 = stage.forward(v1, v2)
                with full_precision(dev):
                    loss = stage.loss_fn(z1.float(), z2.float())
            stage.opt.zero_grad(set_to_none=True)
            loss.backward()
        return run

    t = time.perf_counter()
    fwd_bwd(stages["compiled"])()
    compile_s = time.perf_counter() - t
    fwd_bwd(stages["compiled"])()
    parts = {"fetch": median_time(lambda: st.train.float(st.batches(1)), args.repeats),
             "views": median_time(lambda: st.views(x), args.repeats),
             "fwd_bwd_eager": median_time(fwd_bwd(st), args.repeats),
             "fwd_bwd_compiled": median_time(fwd_bwd(stages["compiled"]), args.repeats),
             "optimizer": median_time(lambda: st.opt.step(), args.repeats)}

    # -- whole steps, alternating blocks (same load for both)
    steps = {"eager": [], "compiled": []}
    i = 0
    for _ in range(args.blocks):
        for variant, stage in stages.items():
            for _ in range(args.steps):
                t = time.perf_counter()
                stage.step(i)
                steps[variant].append(time.perf_counter() - t)
                i += 1
    med = {k: statistics.median(v) for k, v in steps.items()}
    from distill.engine.provenance import machine
    row = {"date": time.strftime("%Y-%m-%d"), "machine": machine(dev),
           "cpu_bf16_units": cpu_has_bf16_units(), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "precision": describe_precision(dev, cfg.amp), "config": args.config, "overrides": args.overrides,
           "batch": cfg.batch_size, "backbone": cfg.backbone, "ssl": cfg.ssl, "compile_seconds": round(compile_s, 1),
           "parts_s": {k: round(v, 4) for k, v in parts.items()},
           "step_s": {k: round(v, 4) for k, v in med.items()}, "steps_per_epoch": spe,
           "epoch_s": {k: round(v * spe, 1) for k, v in med.items()}, "speedup": round(med["eager"] / med["compiled"], 2)}
    print(json.dumps(row, indent=1))
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


def write_docs(doc: str, rows_file: str) -> None:
    from distill.engine.files import write_block
    rows = [json.loads(x) for x in Path(rows_file).read_text().splitlines() if x.strip()]
    lines = ["| date | machine | precision | views | fwd+bwd eager | fwd+bwd compiled | optimizer | step eager | "
             "step compiled | epoch eager | epoch compiled | speed-up |", "|" + "---|" * 12]
    for r in rows:
        pt, st, ep = r["parts_s"], r["step_s"], r["epoch_s"]
        lines.append(f"| {r['date']} | {r['machine']} | {r['precision']} | {pt['views']:.3f} s | {pt['fwd_bwd_eager']:.3f} s "
                     f"| {pt['fwd_bwd_compiled']:.3f} s | {pt['optimizer']:.3f} s | {st['eager']:.3f} s | {st['compiled']:.3f} s "
                     f"| {ep['eager']:.0f} s | {ep['compiled']:.0f} s | {r['speedup']:.2f}x |")
    lines.append("\nParts: medians of single calls; steps: medians of whole steps, eager and compiled in alternating "
                 "blocks in one process (same machine load); epoch = median step x steps per epoch. Raw rows: "
                 "docs/bench/teacher_step.jsonl.")
    print(f"updated {write_block(doc, 'teacher-step', chr(10).join(lines))}")


if __name__ == "__main__":
    main()
