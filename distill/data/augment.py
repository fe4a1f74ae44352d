"""Batch augmentation on the device (kornia), on float images in [0, 1] pixel space.

- :class:`CropFlip`: random crop with zero padding + horizontal flip (the real-data augmentation of
  KRR-ST and of fine-tuning); :class:`ResizedCropFlip`: random resized crop + flip (ImageNet scale).
- :class:`SSLViews`: the two-view pipeline of Barlow Twins / SimCLR (random resized crop, flip, colour
  jitter, grayscale, optional blur and solarisation, per view).
- :class:`DSA`: a differentiable (DSA-style) set of colour, crop, cutout, flip, scale and rotation,
  gradients flow to the input images (used on synthetic images).
- :func:`fixed_transform` (from ``transforms.py``, kornia-free): deterministic rotations and flips for
  predefined augmentation.

All randomness comes from torch's global generator, so a seeded run is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass

import kornia.augmentation as K
import torch
from torch import nn

from .transforms import FIXED_TRANSFORMS, fixed_transform  # noqa: F401  (re-exported: the augmentation API)


class CropFlip(nn.Module):
    """Random crop of the zero-padded image (``padding`` px each side) and horizontal flip (p = 0.5)."""

    def __init__(self, image_size: int, padding: int = 4, flip: bool = True):
        super().__init__()
        ops = [K.RandomCrop((image_size, image_size), padding=padding)] if padding > 0 else []
        if flip:
            ops.append(K.RandomHorizontalFlip())
        self.aug = nn.Sequential(*ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aug(x) if len(self.aug) else x


class ResizedCropFlip(nn.Module):
    """Random resized crop (area fraction in ``scale``, aspect 3/4-4/3) + horizontal flip (p = 0.5): the
    ImageNet training augmentation (SC-DD's relabel at ImageNet scale)."""

    def __init__(self, image_size: int, scale=(0.08, 1.0)):
        super().__init__()
        self.aug = nn.Sequential(K.RandomResizedCrop((image_size, image_size), scale=tuple(scale)),
                                 K.RandomHorizontalFlip())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aug(x)


@dataclass
class ViewConfig:
    """One view of the SSL pipeline (defaults: the CIFAR settings of solo-learn / the papers)."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    p_jitter: float = 0.8
    p_gray: float = 0.2
    p_blur: float = 0.0
    p_solarize: float = 0.0
    p_flip: float = 0.5


class SSLViews(nn.Module):
    """Two independently augmented views of a batch, as in Barlow Twins and SimCLR.

    ``view_a`` / ``view_b`` may differ (the asymmetric blur/solarisation of BYOL/Barlow Twins);
    by default view b solarises with p = 0.2 as in Barlow Twins, and neither blurs (CIFAR-scale).
    """

    def __init__(self, image_size: int, view_a: ViewConfig | None = None, view_b: ViewConfig | None = None):
        super().__init__()
        view_a = view_a or ViewConfig()
        view_b = view_b or ViewConfig(p_solarize=0.2)
        self.a = self._pipeline(image_size, view_a)
        self.b = self._pipeline(image_size, view_b)

    @staticmethod
    def _pipeline(size: int, v: ViewConfig) -> nn.Sequential:
        b, c, s, h = v.jitter
        ops = [K.RandomResizedCrop((size, size), scale=tuple(v.crop_scale)),
               K.RandomHorizontalFlip(p=v.p_flip),
               K.ColorJiggle(b, c, s, h, p=v.p_jitter),
               K.RandomGrayscale(p=v.p_gray)]
        if v.p_blur > 0:
            k = max(3, (size // 10) | 1)
            ops.append(K.RandomGaussianBlur((k, k), (0.1, 2.0), p=v.p_blur))
        if v.p_solarize > 0:
            ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=v.p_solarize))
        return nn.Sequential(*ops)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(x).clamp_(0, 1), self.b(x).clamp_(0, 1)


class DSA(nn.Module):
    """Differentiable Siamese augmentation (Zhao & Bilen, 2021) on kornia ops.

    ``strategy`` is an underscore-separated list among color, crop, cutout, flip, scale, rotate,
    applied in that order, each with fresh per-sample parameters. Gradients reach the input, so
    it can sit between learnable synthetic images and a loss. Ranges follow DSA: brightness +-0.5,
    saturation x[0, 2], contrast x[0.5, 1.5], translation 1/8, cutout half the side, scale
    [1/1.2, 1.2], rotation +-15 degrees.
    """

    OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")

    def __init__(self, image_size: int, strategy: str = "color_crop_cutout_flip_scale_rotate"):
        super().__init__()
        names = [s for s in strategy.split("_") if s]
        unknown = [s for s in names if s not in self.OPS]
        if unknown:
            raise ValueError(f"unknown DSA op(s) {unknown}; choose from {self.OPS}")
        ops = []
        for name in self.OPS:  # fixed order, as in DSA
            if name not in names:
                continue
            if name == "color":
                ops.append(K.ColorJiggle(brightness=0.5, contrast=0.5, saturation=1.0, p=1.0))
            elif name == "crop":
                ops.append(K.RandomAffine(degrees=0, translate=(0.125, 0.125), p=1.0))
            elif name == "cutout":
                ops.append(K.RandomErasing(scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0, p=1.0))
            elif name == "flip":
                ops.append(K.RandomHorizontalFlip(p=0.5))
            elif name == "scale":
                ops.append(K.RandomAffine(degrees=0, scale=(1 / 1.2, 1.2), p=1.0))
            elif name == "rotate":
                ops.append(K.RandomAffine(degrees=15.0, p=1.0))
        self.aug = nn.Sequential(*ops)
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aug(x) if len(self.aug) else x
