"""Deterministic transforms of image batches (pure torch, no kornia): Boost's predefined views.

Each is exact and differentiable, and commutes with per-channel normalisation.
"""
from __future__ import annotations

import torch

_FIXED = {
    "identity": lambda x: x,
    "rot90": lambda x: torch.rot90(x, 1, dims=(-2, -1)),
    "rot180": lambda x: torch.rot90(x, 2, dims=(-2, -1)),
    "rot270": lambda x: torch.rot90(x, 3, dims=(-2, -1)),
    "hflip": lambda x: torch.flip(x, dims=(-1,)),
    "vflip": lambda x: torch.flip(x, dims=(-2,)),
}
FIXED_TRANSFORMS = tuple(_FIXED)


def fixed_transform(x: torch.Tensor, name: str) -> torch.Tensor:
    """A deterministic transform of an N x C x H x W batch (exact, differentiable)."""
    if name not in _FIXED:
        raise ValueError(f"unknown fixed transform '{name}'; choose from {FIXED_TRANSFORMS}")
    return _FIXED[name](x)


__all__ = ["FIXED_TRANSFORMS", "fixed_transform"]
