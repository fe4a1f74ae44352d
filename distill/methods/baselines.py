"""Baselines: real images with their teacher representations as targets (same file format).

- ``random``: N random real images (class-balanced when class-conditional), the honest baseline
  every method must beat under the same protocol.
- ``kcenter``: greedy k-center (farthest-point traversal) in the teacher's feature space (cosine
  geometry: features are L2-normalised), per class when class-conditional.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distilled import DistilledSet
from ..engine.progress import progress
from .base import Method, register_method


class _Subset(Method):
    default_steps = 0

    def select(self) -> torch.Tensor:
        raise NotImplementedError

    def setup(self, fresh: bool = True) -> None:
        self.gen = torch.Generator().manual_seed(self.ctx.seed)
        self.idx = self.select()

    def export(self) -> DistilledSet:
        src, teacher = self.ctx.source, self.ctx.teacher
        x = src.float(self.idx)
        labels = src.labels[self.idx].clone() if self.ctx.class_conditional else None
        return DistilledSet(images=x, targets=teacher.encode(x), labels=labels,
                            meta={"source_indices": self.idx.cpu().tolist()})

    def state_dict(self) -> dict:
        return {"idx": self.idx}

    def load_state_dict(self, state: dict) -> None:
        self.idx = state["idx"].to(self.ctx.source.device)


@register_method
class RandomSubset(_Subset):
    name = "random"

    def select(self) -> torch.Tensor:
        return self.ctx.initial_indices(self.gen)


def k_center_greedy(features: torch.Tensor, k: int, first: int = 0) -> torch.Tensor:
    """Indices of k points chosen by farthest-point traversal from ``first`` (Euclidean)."""
    n = features.shape[0]
    chosen = torch.empty(k, dtype=torch.long, device=features.device)
    chosen[0] = first
    dist = (features - features[first]).pow(2).sum(1)
    for j in progress(range(1, k), desc="k-center"):
        nxt = torch.argmax(dist)
        chosen[j] = nxt
        dist = torch.minimum(dist, (features - features[nxt]).pow(2).sum(1))
    return chosen[: min(k, n)]


@register_method
class KCenter(_Subset):
    name = "kcenter"

    def select(self) -> torch.Tensor:
        src = self.ctx.source
        feats = F.normalize(self.ctx.teacher.represent_cached(src), dim=1)
        if not self.ctx.class_conditional:
            first = int(torch.randint(0, len(src), (1,), generator=self.gen))
            return k_center_greedy(feats, self.ctx.budget, first)
        # per class, with the class-balanced split of the budget
        per_class = self.ctx.initial_indices(self.gen)
        counts = src.labels[per_class].bincount(minlength=src.num_classes)
        out = []
        for c in range(src.num_classes):
            members = torch.nonzero(src.labels == c).flatten()
            if counts[c] == 0:
                continue
            first = int(torch.randint(0, len(members), (1,), generator=self.gen))
            out.append(members[k_center_greedy(feats[members], int(counts[c]), first)])
        return torch.cat(out)
