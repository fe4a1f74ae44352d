"""Per-dataset normalisation (channel mean / std of the training split), per resolution.

The table holds the usual published values; any dataset not in it gets its statistics computed
from the images being loaded. Resolution-specific entries override the default row.
"""
from __future__ import annotations

import torch

Stats = tuple[tuple[float, ...], tuple[float, ...]]

# name -> {resolution or None (any): (mean, std)}
NORMALIZATION: dict[str, dict[int | None, Stats]] = {
    "cifar10": {None: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))},
    "cifar100": {None: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))},
    "stl10": {None: ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713))},
    "tinyimagenet": {None: ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821))},
    "imagenet": {None: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))},
    # the embedded sample is a CIFAR-10 subset; values computed on its 4,000 training images
    "sample": {None: ((0.4912, 0.4808, 0.4442), (0.2474, 0.2447, 0.2628))},
}


def lookup_normalization(name: str, image_size: int | None = None) -> Stats | None:
    rows = NORMALIZATION.get(name)
    if rows is None:
        return None
    return rows.get(image_size, rows.get(None))


def compute_normalization(images: torch.Tensor, chunk: int = 4096) -> Stats:
    """Channel mean / std of a uint8 N x C x H x W tensor, in [0, 1] units (float64 sums)."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    count = 0
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].to("cpu", torch.float64).div_(255.0)
        s += x.sum(dim=(0, 2, 3))
        s2 += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if count == 0:
        return tuple([0.5] * c), tuple([0.25] * c)
    mean = s / count
    std = (s2 / count - mean**2).clamp_min(1e-12).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def normalization_for(name: str, image_size: int, images: torch.Tensor) -> Stats:
    """The table's entry, else statistics of ``images``."""
    return lookup_normalization(name, image_size) or compute_normalization(images)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(x - mean) / std per channel for a float N x C x H x W batch in [0, 1]."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
