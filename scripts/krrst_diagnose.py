#!/usr/bin/env python
"""Why does (or doesn't) a KRR-ST set beat a random subset? Diagnostics on a validation split.

    python scripts/krrst_diagnose.py --root /data --teacher runs/c100/teacher.safetensors \
        runs/c100/krr_st_n100.safetensors runs/c100/random_n100.safetensors -o reports/krrst_diagnose

Everything is measured on images held out from the *training* split (``--val-per-class`` per
class; the test split is never touched), for each set:

- ``krr_val_mse``: the KRR-ST objective itself on held-out real images: kernel ridge regression
  from the set's (images, targets) through freshly initialised pool networks, MSE to the
  teacher's representations (mean over ``--inits`` networks). Lower = the set encodes the teacher
  better for a network it has never seen.
- ``student_r2``: pre-train a fresh network on the set (MSE to its targets, as the evaluation
  protocol does), then R^2 of its predicted targets against the teacher's representations of the
  held-out images: how much of the teacher the student actually learned.
- ``val_linear``: linear probe of that student (``--train-per-class`` labelled training images,
  disjoint from the held-out ones), accuracy on the held-out images.

Also the teacher's own linear-probe accuracy (the ceiling of what regressing it can give) and
the no-pre-training network. Writes ``diagnose.md`` and ``diagnose.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from distill.config import LinearConfig, PretrainConfig
from distill.data import label_subset, load_dataset
from distill.distilled import DistilledSet
from distill.engine import resolve_device, seed_everything
from distill.evaluate import linear_probe, pretrain_on_set
from distill.methods.krr_st import krr_predict
from distill.models import create_model
from distill.ssl import Teacher


def split_train(train, val_per_class: int, train_per_class: int, seed: int = 0):
    """Disjoint (probe-train, held-out) subsets of the training split, balanced by class."""
    labels = train.labels.cpu()
    held = label_subset(labels, per_class=val_per_class, seed=seed)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held] = False
    rest = mask.nonzero().squeeze(1)
    pick = label_subset(labels[rest], per_class=train_per_class, seed=seed + 1)
    return train.subset(rest[pick]), train.subset(held)


@torch.no_grad()
def krr_val_mse(s: DistilledSet, val_x: torch.Tensor, val_y: torch.Tensor, arch: str, inits: int, device) -> float:
    m = s.materialize()
    losses = []
    for i in range(inits):
        torch.manual_seed(1000 + i)
        net = create_model(arch, out_dim=0, image_size=s.image_size, in_chans=s.channels, mean=s.mean,
                           std=s.std).to(device).eval()
        f_s = net.embed(m.images.to(device).float())
        f_t = torch.cat([net.embed(val_x[j:j + 500]) for j in range(0, len(val_x), 500)])
        losses.append(F.mse_loss(krr_predict(f_s, f_t, m.targets.to(device).float()), val_y).item())
    return sum(losses) / len(losses)


def r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    return 1.0 - ((pred - y) ** 2).sum().item() / ((y - y.mean(0, keepdim=True)) ** 2).sum().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sets", nargs="+", help="distilled-set files (labelled by file stem)")
    ap.add_argument("--root", required=True)
    ap.add_argument("--dataset", default="cifar100")
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--arch", default="convnet-32-64-128-bn", help="student / fresh-pool architecture")
    ap.add_argument("--epochs", type=int, default=300, help="pre-training epochs on each set")
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--train-per-class", type=int, default=100)
    ap.add_argument("--inits", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("-o", "--output", default="reports/krrst_diagnose")
    args = ap.parse_args()
    device = resolve_device(args.device)
    teacher = Teacher.load(args.teacher, device)
    train = load_dataset(args.dataset, args.root, "train", device=device)
    probe_train, held = split_train(train, args.val_per_class, args.train_per_class, args.seed)
    val_x = held.float()
    val_y = teacher.represent(held)
    lin = LinearConfig(steps=100, label_fractions=[1.0])
    rows = []

    t_lin = linear_probe(teacher.model, probe_train, held, lin, args.seed)[1.0]
    rows.append({"set": f"teacher itself ({teacher.arch})", "val_linear": t_lin})
    print(f"teacher linear probe on held-out train images: {t_lin:.2f}", flush=True)

    seed_everything(args.seed)
    net = create_model(args.arch, out_dim=0, image_size=train.image_size, in_chans=train.channels,
                       mean=train.mean, std=train.std).to(device)
    rows.append({"set": "no pre-training", "val_linear": linear_probe(net, probe_train, held, lin, args.seed)[1.0]})
    print(f"no pre-training: {rows[-1]['val_linear']:.2f}", flush=True)

    for path in args.sets:
        s = DistilledSet.load(path)
        t = time.time()
        row = {"set": Path(path).stem, "method": s.method, "n": len(s), "steps": s.meta.get("steps"),
               "params": s.meta.get("config", {}).get("params")}
        row["krr_val_mse"] = krr_val_mse(s, val_x, val_y, args.arch, args.inits, device)
        m = s.materialize()
        row["target_norm"] = m.targets.norm(dim=1).mean().item()
        # how far the learned targets moved from the teacher's view of the learned images
        row["target_vs_teacher_r2"] = r2(m.targets.to(device).float(), teacher.encode(m.images.to(device).float()))
        seed_everything(args.seed)
        net = create_model(args.arch, out_dim=0, image_size=s.image_size, in_chans=s.channels, mean=s.mean,
                           std=s.std).to(device)
        pretrain_on_set(net, m, PretrainConfig(epochs=args.epochs), device)
        net.eval()
        with torch.no_grad():
            pred = torch.cat([net.head(net.embed(val_x[j:j + 500])) for j in range(0, len(val_x), 500)])
        row["student_r2"] = r2(pred.float(), val_y)
        row["val_linear"] = linear_probe(net, probe_train, held, lin, args.seed)[1.0]
        row["seconds"] = round(time.time() - t, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# KRR-ST diagnostics on held-out {args.dataset} training images\n",
             f"Teacher `{teacher.describe()}`; {args.val_per_class} held-out training images per class, linear probes "
             f"fit on {args.train_per_class} other training images per class; student `{args.arch}` pre-trained "
             f"{args.epochs} epochs; KRR objective through {args.inits} fresh `{args.arch}` networks; seed {args.seed}. "
             "The test split is not used.\n",
             "| set | KRR val MSE (fresh nets) | targets vs teacher(images) R² | student R² to teacher | val linear (%) |",
             "|---|---|---|---|---|"]

    def f(v, spec):
        return "–" if v is None else format(v, spec)
    for r in rows:
        lines.append(f"| {r['set']} | {f(r.get('krr_val_mse'), '.4f')} | {f(r.get('target_vs_teacher_r2'), '.3f')} | "
                     f"{f(r.get('student_r2'), '.3f')} | {f(r.get('val_linear'), '.2f')} |")
    (out / "diagnose.md").write_text("\n".join(lines) + "\n")
    (out / "diagnose.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
