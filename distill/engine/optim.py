"""Optimisers and schedules shared by teacher training, distillation and evaluation."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    For each parameter with ``lars_adapt=True`` in its group, the update is scaled by the trust
    ratio ``eta * ||w|| / (||g|| + wd * ||w||)``; groups with ``lars_adapt=False`` (biases, norms)
    take plain SGD steps, as in Barlow Twins and solo-learn.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_adapt=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if g["weight_decay"]:
                    d = d.add(p, alpha=g["weight_decay"])
                if g["lars_adapt"]:
                    pn, gn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = torch.where((pn > 0) & (gn > 0), g["eta"] * pn / gn, torch.ones_like(pn))
                    d = d.mul(trust)
                st = self.state[p]
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = d.clone()
                else:
                    buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])
        return loss


def param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """Two groups: weights (decayed, LARS-adapted) and biases / norm parameters (neither)."""
    decay, no_decay = [], []
    for m in modules:
        for p in m.parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay),
            dict(params=no_decay, weight_decay=0.0, lars_adapt=False)]


def build_optimizer(name: str, groups, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer '{name}'", fix="use sgd, lars, adam or adamw")


def warmup_cosine(total_steps: int, warmup_steps: int = 0, final_ratio: float = 0.0):
    """LambdaLR factor: linear warm-up from ~0 to 1, then cosine down to ``final_ratio``."""
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def linear_decay(total_steps: int, final_ratio: float = 1e-3):
    """LambdaLR factor: linear from 1 to ``final_ratio`` over ``total_steps``."""
    def f(step: int) -> float:
        return 1.0 - (1.0 - final_ratio) * min(1.0, step / max(1, total_steps))
    return f
