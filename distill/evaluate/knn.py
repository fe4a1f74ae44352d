"""Weighted k-NN classification on frozen features (Wu et al., 2018), the usual SSL health check."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> float:
    """Top-1 accuracy (%) of a cosine-similarity k-NN vote weighted by exp(sim / T)."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, train_x.shape[0])
    tr = F.normalize(train_x.float(), dim=1)
    te = F.normalize(test_x.float(), dim=1)
    correct = 0
    for i in range(0, te.shape[0], chunk):
        sim = te[i:i + chunk] @ tr.T
        w, idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device)
        votes.scatter_add_(1, train_y[idx], (w / temperature).exp())
        correct += (votes.argmax(1) == test_y[i:i + chunk]).sum().item()
    return 100.0 * correct / te.shape[0]
