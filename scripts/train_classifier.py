#!/usr/bin/env python
"""Train a supervised classifier (the KD teacher) and write it as an ``ssdd.classifier`` file.

    python scripts/train_classifier.py --dataset cifar10 --root /data --arch convnet-32-64-128-bn \
        --iterations 4000 -o runs/cifar10/classifier.safetensors
"""
from __future__ import annotations

import argparse
import time

from distill.data import load_dataset
from distill.engine import resolve_device
from distill.evaluate import train_classifier


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--root", default=None)
    ap.add_argument("--arch", default="convnet-32-64-128-bn")
    ap.add_argument("--iterations", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    device = resolve_device(args.device)
    train = load_dataset(args.dataset, args.root, "train", device=device)
    test = load_dataset(args.dataset, args.root, "test", device=device)
    t0 = time.time()
    clf = train_classifier(args.arch, train, test, args.iterations, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    clf.meta["train_seconds"] = round(time.time() - t0, 1)
    clf.save(args.output)
    print(f"wrote {args.output}: {args.arch} on {args.dataset}, test top-1 {clf.meta['test_acc']:.2f}% "
          f"({clf.meta['train_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
