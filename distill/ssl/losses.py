"""Self-supervised losses, each stating its paper's equation, each with a ``gather_distributed`` switch
(the loss of the global batch when many processes each hold a shard of it)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import dist


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5,
                      gather_distributed: bool = False) -> torch.Tensor:
    r"""Barlow Twins (Zbontar et al., 2021), eq. 1:

    .. math:: \mathcal{L} = \sum_i (1 - C_{ii})^2 + \lambda \sum_i \sum_{j \ne i} C_{ij}^2,
              \quad C_{ij} = \frac{\sum_b z^A_{b,i} z^B_{b,j}}{\sqrt{\sum_b (z^A_{b,i})^2} \sqrt{\sum_b (z^B_{b,j})^2}}

    with each embedding dimension standardised over the batch (mean 0, std 1; the paper's
    affine-free batch norm), so C is the cross-correlation matrix, ``C = z1n^T z2n / N``.

    ``gather_distributed``: the batch is every rank's rows. The mean, the variance and
    ``z1n^T z2n`` are sums over ranks (gradients flow through them), so every rank computes the loss
    of the global batch, as the paper's 32-GPU runs did; a no-op in one process.
    """
    if gather_distributed and dist.is_distributed():
        n = dist.all_reduce_sum(torch.tensor(float(z1.shape[0]), device=z1.device))

        def standardise(z):
            mean = dist.all_reduce_sum(z.sum(0), grad=True) / n
            var = dist.all_reduce_sum((z - mean).pow(2).sum(0), grad=True) / n
            return (z - mean) / (var.sqrt() + eps)
        c = dist.all_reduce_sum(standardise(z1).T @ standardise(z2), grad=True) / n
    else:
        n = z1.shape[0]
        z1n = (z1 - z1.mean(0)) / (z1.std(0, unbiased=False) + eps)
        z2n = (z2 - z2.mean(0)) / (z2.std(0, unbiased=False) + eps)
        c = z1n.T @ z2n / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
                 gather_distributed: bool = False) -> torch.Tensor:
    r"""NT-Xent of SimCLR (Chen et al., 2020), eq. 1, averaged over all 2N anchors:

    .. math:: \ell_{i,j} = -\log \frac{\exp(\mathrm{sim}(z_i, z_j)/\tau)}
                                      {\sum_{k \ne i} \exp(\mathrm{sim}(z_i, z_k)/\tau)}

    with cosine similarity; the positive of view i of example b is the other view of b.

    ``gather_distributed``: negatives are gathered from every rank (SimCLR's global batch); each rank
    scores its own anchors against all 2N embeddings and returns its share, so that the mean over
    ranks is the loss of the global batch (gradients reach every rank's rows); a no-op in one process.
    """
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n_local = z1.shape[0]
    if gather_distributed and dist.is_distributed():
        sizes = dist.row_counts(n_local, z1.device)
        offset, n = sum(sizes[:dist.rank()]), sum(sizes)
        everyone = torch.cat([dist.all_gather(z1, grad=True), dist.all_gather(z2, grad=True)])
        share = dist.world_size() * 2 * n_local / (2 * n)    # this rank's anchors' weight in the global mean
    else:
        offset, n, share = 0, n_local, 1.0
        everyone = torch.cat([z1, z2])
    anchors = torch.cat([z1, z2])
    sim = anchors @ everyone.T / temperature
    rows = torch.arange(n_local, device=z1.device) + offset
    own = torch.cat([rows, rows + n])                      # each anchor's own column, masked out
    positive = torch.cat([rows + n, rows])                 # the other view of the same example
    sim = sim.masked_fill(F.one_hot(own, 2 * n).bool(), float("-inf"))
    return share * F.cross_entropy(sim, positive)


class BarlowTwinsLoss(nn.Module):
    """:func:`barlow_twins_loss` as a module (``lambd``, ``gather_distributed``)."""

    def __init__(self, lambd: float = 5e-3, gather_distributed: bool = False):
        super().__init__()
        self.lambd, self.gather_distributed = lambd, gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return barlow_twins_loss(z1, z2, self.lambd, gather_distributed=self.gather_distributed)


class NTXentLoss(nn.Module):
    """:func:`nt_xent_loss` as a module (``temperature``, ``gather_distributed``)."""

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False):
        super().__init__()
        self.temperature, self.gather_distributed = temperature, gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent_loss(z1, z2, self.temperature, gather_distributed=self.gather_distributed)


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
