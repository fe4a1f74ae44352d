"""Seeded, class-balanced label subsets (1 %, 5 %, k per class) for the label-fraction protocols."""
from __future__ import annotations

import math

import torch

from ..errors import DataError


def label_subset(labels: torch.Tensor, fraction: float | None = None, per_class: int | None = None,
                 seed: int = 0) -> torch.Tensor:
    """Indices of a stratified subset: ``fraction`` of each class (at least one) or ``per_class`` each.

    The same (labels, fraction/per_class, seed) always gives the same indices, sorted ascending.
    """
    if (fraction is None) == (per_class is None):
        raise ValueError("give exactly one of fraction and per_class")
    if fraction is not None and not 0 < fraction <= 1:
        raise DataError(f"label fraction {fraction} must be in (0, 1]")
    if per_class is not None and per_class < 1:
        raise DataError(f"per_class {per_class} must be >= 1")
    labels = torch.as_tensor(labels).cpu()
    g = torch.Generator().manual_seed(int(seed))
    chosen = []
    for c in torch.unique(labels):
        if c < 0:
            continue
        idx = torch.nonzero(labels == c).flatten()
        k = per_class if per_class is not None else max(1, math.floor(fraction * len(idx) + 0.5))
        if k > len(idx):
            raise DataError(f"class {int(c)} has {len(idx)} examples, fewer than the {k} asked for")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    if not chosen:
        raise DataError("no labelled examples to take a subset of")
    return torch.sort(torch.cat(chosen)).values


def balanced_indices(labels: torch.Tensor, total: int, seed: int = 0, fewer_classes: bool = False) -> torch.Tensor:
    """``total`` indices spread as evenly as possible over the classes (the first classes get the rest).
    With fewer indices than classes: refused, or with ``fewer_classes`` one image of each of ``total``
    classes drawn at random."""
    labels = torch.as_tensor(labels).cpu()
    classes = [c for c in torch.unique(labels).tolist() if c >= 0]
    g = torch.Generator().manual_seed(int(seed))
    if total < len(classes):
        if not fewer_classes:
            raise DataError(f"a class-balanced budget of {total} cannot cover {len(classes)} classes",
                            fix=f"use a budget of at least {len(classes)}")
        classes = sorted(classes[i] for i in torch.randperm(len(classes), generator=g)[:total].tolist())
    base, extra = divmod(total, len(classes))
    out = []
    for i, c in enumerate(classes):
        idx = torch.nonzero(labels == c).flatten()
        k = base + (1 if i < extra else 0)
        if k > len(idx):
            raise DataError(f"class {c} has {len(idx)} examples, fewer than the {k} the budget needs")
        out.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.cat(out)
