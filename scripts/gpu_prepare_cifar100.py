#!/usr/bin/env python
"""Write the CIFAR-100 files that scripts/gpu_scdd.sh carries to a GPU machine (64 MiB per call).

    python scripts/gpu_prepare_cifar100.py --root data --classifier runs/cifar100/squeeze_c10teacher.safetensors

.gpu/c100.npz: a class-balanced 50-per-class subset of CIFAR-100 train (seeded, seed 0: the source of
the random baselines) and the whole test split, in the `npz` source layout (42 MB compressed);
.gpu/c100_squeeze.safetensors: the SC-DD classifier (ssdd squeeze). .gpu/ must be in .git/info/exclude.
"""
import argparse
import shutil
from pathlib import Path

import numpy as np

from distill.data import label_subset, load_dataset


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="data")
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--out", default=".gpu")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    tr = load_dataset("cifar100", args.root, "train")
    te = load_dataset("cifar100", args.root, "test")
    sub = tr.subset(label_subset(tr.labels, per_class=args.per_class, seed=0))
    np.savez_compressed(out / "c100.npz", x_train=sub.images.permute(0, 2, 3, 1).numpy(), y_train=sub.labels.numpy(),
                        x_test=te.images.permute(0, 2, 3, 1).numpy(), y_test=te.labels.numpy(),
                        classes=np.array(tr.classes))
    shutil.copyfile(args.classifier, out / "c100_squeeze.safetensors")
    print(f"wrote {out / 'c100.npz'} ({len(sub)} train, {len(te)} test images) and {out / 'c100_squeeze.safetensors'}")


if __name__ == "__main__":
    main()
