"""Device selection, bf16 autocast and channels_last, all no-ops on the CPU."""
from __future__ import annotations

import contextlib

import torch

from ..errors import UserError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:1`` as given."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device '{spec}' was asked for but CUDA is not available on this machine",
                            fix="use --device cpu (or device=auto)")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device '{spec}' does not exist: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")
        return dev
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("device 'mps' was asked for but is not available", fix="use --device cpu")
        return torch.device("mps")
    raise UserError(f"unknown device '{spec}'", fix="use one of auto, cpu, cuda, cuda:N")


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; a null context elsewhere (CPU autocast only slows small convnets)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def channels_last(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``module`` to ``device``; channels_last memory format on CUDA."""
    module = module.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return module
