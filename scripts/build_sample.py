#!/usr/bin/env python
"""Rebuild the embedded sample (distill/data/sample/) from a local CIFAR-10 copy.

    python scripts/build_sample.py --cifar-root /path/with/cifar-10-batches-py   # torchvision layout
    python scripts/build_sample.py                                               # default: unpack ../shared/data

Takes the first --train-per-class training images and --test-per-class test images of each class
in the official sample order (deterministic), stores them as lossless WebP mosaics (100 tiles per
row) plus meta.json (labels, class names, the official indices), checks the round trip bit for bit,
and prints the normalisation statistics of the training part.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "distill" / "data" / "sample"
COLS = 100


def pick(labels: np.ndarray, per_class: int) -> np.ndarray:
    idx = [np.flatnonzero(labels == c)[:per_class] for c in range(10)]
    return np.sort(np.concatenate(idx))


def mosaic(x: np.ndarray) -> np.ndarray:
    n = len(x)
    rows = -(-n // COLS)
    pad = np.zeros((rows * COLS - n, *x.shape[1:]), dtype=np.uint8)
    x = np.concatenate([x, pad])
    return x.reshape(rows, COLS, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, COLS * 32, 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cifar-root", type=Path, default=None, help="folder holding cifar-10-batches-py/")
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--train-per-class", type=int, default=400)
    ap.add_argument("--test-per-class", type=int, default=100)
    args = ap.parse_args()
    import torchvision
    with tempfile.TemporaryDirectory() as tmp:
        root = args.cifar_root
        if root is None:
            root = Path(tmp)
            subprocess.run([sys.executable, str(args.shared / "cifar.py"), str(root), "--dataset", "cifar10"], check=True)
        splits = {}
        for split in ("train", "test"):
            ds = torchvision.datasets.CIFAR10(str(root), train=split == "train", download=False)
            labels = np.asarray(ds.targets)
            per = args.train_per_class if split == "train" else args.test_per_class
            idx = pick(labels, per)
            splits[split] = (ds.data[idx], labels[idx], idx)
            classes = list(ds.classes)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"source": "CIFAR-10 (Krizhevsky, 2009), first images of each class in the official order",
            "tile": 32, "classes": classes, "splits": {}}
    total = 0
    for split, (x, y, idx) in splits.items():
        path = OUT / f"{split}.webp"
        Image.fromarray(mosaic(x)).save(path, "WEBP", lossless=True, quality=100, method=6)
        back = np.asarray(Image.open(path).convert("RGB"))
        assert (back[: mosaic(x).shape[0]] == mosaic(x)).all(), "lossless round trip failed"
        meta["splits"][split] = {"file": path.name, "count": int(len(x)), "cols": COLS, "labels": y.tolist(),
                                 "official_index": idx.tolist()}
        total += path.stat().st_size
        print(f"{split}: {len(x)} images -> {path} ({path.stat().st_size / 1e6:.2f} MB)")
    (OUT / "meta.json").write_text(json.dumps(meta, separators=(",", ":")) + "\n")
    x = splits["train"][0].astype(np.float64) / 255
    print(f"total {total / 1e6:.2f} MB; train mean {x.mean(axis=(0, 1, 2)).round(4)} std {x.std(axis=(0, 1, 2)).round(4)}")


if __name__ == "__main__":
    main()
