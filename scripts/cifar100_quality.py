#!/usr/bin/env python
"""Quality on the real CIFAR-100: teacher -> KRR-ST and random subset at N = 100 and 1000 ->
pre-train + linear probe on CIFAR-100 and CIFAR-10, all under one protocol.

    python ../shared/data/cifar.py /data          # once: CIFAR-10/100 in torchvision's layout
    python scripts/cifar100_quality.py --root /data --work runs/c100 --report reports/cifar100_cpu

Every stage writes its file and is skipped when the file exists (the teacher resumes from its
checkpoint), so the script can be stopped and started again. The defaults are sized for a 2-core
CPU (a few hours); --preset paper gives the published setting for a GPU.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from distill.config import (DataConfig, DistillConfig, EvalConfig, FinetuneConfig, LinearConfig, PretrainConfig,
                            TargetConfig, TeacherConfig)
from distill.distilled import DistilledSet
from distill.evaluate import NO_PRETRAIN, evaluate_sets
from distill.evaluate.report import write_report
from distill.methods import run_distillation
from distill.ssl import Teacher, train_teacher
from distill.engine import checkpoint_path

PRESETS = {
    "cpu": dict(teacher_backbone="convnet-32-64-128-bn", ssl="simclr", teacher_epochs=20, pool="convnet-32-64-128-bn",
                pool_size=4, pool_steps=100, real_batch=256, lr=1e-2, steps={100: 1000, 1000: 500},
                arch="convnet-32-64-128-bn", pretrain_epochs={100: 300, 1000: 100}, seeds=[0, 1], finetune=0),
    "paper": dict(teacher_backbone="resnet18", ssl="barlow_twins", teacher_epochs=800, pool="convnet-128-256-512-bn",
                  pool_size=10, pool_steps=1000, real_batch=1024, lr=1e-4, steps={100: 160_000, 1000: 160_000},
                  arch="convnet-128-256-512-bn", pretrain_epochs={100: 1000, 1000: 1000}, seeds=[0, 1, 2],
                  finetune=10_000),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="folder holding cifar-100-python/ and cifar-10-batches-py/")
    ap.add_argument("--work", default="runs/c100")
    ap.add_argument("--report", default="reports/cifar100_cpu")
    ap.add_argument("--preset", choices=list(PRESETS), default="cpu")
    ap.add_argument("--budgets", default="100,1000")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", default=None, help="KRR-ST outer steps per budget, e.g. 100:400,1000:200 "
                                                  "(overrides the preset)")
    ap.add_argument("--pool-steps", type=int, default=None, help="KRR-ST pool model lifetime (overrides the preset)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the no-pre-training rows (e.g. when a "
                                                                 "second budget is run into its own report)")
    args = ap.parse_args()
    p = dict(PRESETS[args.preset])
    if args.pool_steps:
        p["pool_steps"] = args.pool_steps
    if args.steps:
        p["steps"] = {int(k): int(v) for k, v in (kv.split(":") for kv in args.steps.split(","))}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = {"preset": args.preset, "settings": p, "stages": {}}
    data = DataConfig(name="cifar100", root=args.root)

    t = time.time()
    tpath = work / "teacher.safetensors"
    if not tpath.exists():
        proj = dict(projector_hidden=512, projector_dim=128, projector_layers=2) if p["ssl"] == "simclr" else {}
        tcfg = TeacherConfig(data=data, backbone=p["teacher_backbone"], ssl=p["ssl"], epochs=p["teacher_epochs"],
                             warmup_epochs=2 if args.preset == "cpu" else 10, output=str(tpath), checkpoint_every=1,
                             device=args.device, **proj)
        train_teacher(tcfg, resume=checkpoint_path(tpath).exists())
    teacher = Teacher.load(tpath)
    log["stages"]["teacher"] = {"seconds": round(time.time() - t), "knn_top1": teacher.meta.get("knn_top1"),
                                "train_seconds": teacher.meta.get("train_seconds")}
    print(f"teacher: {teacher.describe()}, k-NN {teacher.meta.get('knn_top1')}%", flush=True)

    sets_by_n = {}
    for n in [int(b) for b in args.budgets.split(",")]:
        sets_by_n[n] = {}
        for method in ("krr_st", "random"):
            out = work / f"{method}_n{n}.safetensors"
            t = time.time()
            if not out.exists():
                params = {}
                if method == "krr_st":
                    params = dict(pool_arch=p["pool"], pool_size=p["pool_size"], pool_steps=p["pool_steps"],
                                  real_batch=p["real_batch"], lr_images=p["lr"], lr_targets=p["lr"])
                cfg = DistillConfig(data=data, teacher=str(tpath), method=method, budget=n,
                                    steps=p["steps"][n] if method == "krr_st" else None, output=str(out),
                                    checkpoint_every=100, device=args.device, params=params)
                res = run_distillation(cfg, resume=Path(str(out).replace(".safetensors", ".ckpt.safetensors")).exists())
                log["stages"][out.stem] = {"seconds": round(time.time() - t), "steps": res.steps,
                                           "loss_first": res.history[0]["loss"] if res.history else None,
                                           "loss_last": res.history[-1]["loss"] if res.history else None}
            label = f"{'KRR-ST' if method == 'krr_st' else 'random'} N={n}"
            sets_by_n[n][label] = DistilledSet.load(out)
            print(f"{label}: {out}", flush=True)

    # one protocol per budget (pre-training epochs scale down with N so N = 1000 stays affordable on a CPU);
    # KRR-ST and random at the same N always share it
    targets = [TargetConfig("cifar100", args.root), TargetConfig("cifar10", args.root)]
    rows = []
    t = time.time()
    baseline = [] if args.no_baseline else [(None, {NO_PRETRAIN: None})]
    for n, group in baseline + list(sets_by_n.items()):
        epochs = p["pretrain_epochs"][n] if n else 1
        ecfg = EvalConfig(arch=p["arch"], targets=targets, pretrain=PretrainConfig(epochs=epochs),
                          finetune=FinetuneConfig(enabled=p["finetune"] > 0, iterations=max(1, p["finetune"])),
                          linear=LinearConfig(steps=100), seeds=p["seeds"], output=args.report, device=args.device)
        rows += evaluate_sets(group, ecfg, write=False).rows
    log["stages"]["evaluate"] = {"seconds": round(time.time() - t)}
    epochs_note = ", ".join(f"N={k}: {v} epochs" for k, v in p["pretrain_epochs"].items())
    notes = [f"CIFAR-100 source, teacher {teacher.describe()} (k-NN {teacher.meta.get('knn_top1')}%). Pre-train "
             f"`{p['arch']}` on each set by MSE to its targets ({epochs_note}), "
             f"then L-BFGS linear probe (100 steps) on the full training split of each target; seeds {p['seeds']}; "
             f"test top-1 (%), mean ± sample std. Preset `{args.preset}`: {p}."]
    rep = write_report(args.report, rows, ("set", "arch", "target", "metric"), "set", ("target", "metric"),
                       "CIFAR-100 distillation quality", notes, {"log": log})
    Path(args.report, "run.json").write_text(json.dumps(log, indent=2) + "\n")
    print(rep["table"])


if __name__ == "__main__":
    main()
