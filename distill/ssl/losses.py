"""Self-supervised losses, each stating its paper's equation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> torch.Tensor:
    r"""Barlow Twins (Zbontar et al., 2021), eq. 1:

    .. math:: \mathcal{L} = \sum_i (1 - C_{ii})^2 + \lambda \sum_i \sum_{j \ne i} C_{ij}^2,
              \quad C_{ij} = \frac{\sum_b z^A_{b,i} z^B_{b,j}}{\sqrt{\sum_b (z^A_{b,i})^2} \sqrt{\sum_b (z^B_{b,j})^2}}

    with each embedding dimension standardised over the batch (mean 0, std 1; the paper's
    affine-free batch norm), so C is the cross-correlation matrix, ``C = z1n^T z2n / N``.
    """
    n = z1.shape[0]
    z1n = (z1 - z1.mean(0)) / (z1.std(0, unbiased=False) + eps)
    z2n = (z2 - z2.mean(0)) / (z2.std(0, unbiased=False) + eps)
    c = z1n.T @ z2n / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    r"""NT-Xent of SimCLR (Chen et al., 2020), eq. 1, averaged over all 2N anchors:

    .. math:: \ell_{i,j} = -\log \frac{\exp(\mathrm{sim}(z_i, z_j)/\tau)}
                                      {\sum_{k \ne i} \exp(\mathrm{sim}(z_i, z_k)/\tau)}

    with cosine similarity; the positive of view i of example b is the other view of b.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def projector(in_dim: int, hidden: int, out_dim: int, layers: int = 3) -> nn.Sequential:
    """MLP projector: (Linear -> BN -> ReLU) x (layers - 1) -> Linear. Barlow Twins uses 3 layers,
    SimCLR 2."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        d = hidden
    mods.append(nn.Linear(d, out_dim, bias=False))
    return nn.Sequential(*mods)


SSL_LOSSES = {"barlow_twins": barlow_twins_loss, "simclr": nt_xent_loss}
