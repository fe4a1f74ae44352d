"""Baselines: real images with their teacher representations as targets (same file format).

- ``random``: N random real images (class-balanced when class-conditional) with the teacher's
  representations as targets: MKDT's baseline, the honest one every method must beat.
- ``random_labelled``: N class-balanced random real images with their **class labels** and no
  targets: the KRR-ST paper's "random" row; evaluation pre-trains on it by cross-entropy (with the
  protocol's ``ce_lr`` / ``ce_augment``, DSA at lr 0.01 for ``krrst``).
- ``kcenter``: greedy k-center (farthest-point traversal) in the teacher's feature space (cosine
  geometry: features are L2-normalised), per class when class-conditional.
- ``herding``: greedy herding in the teacher's feature space (Welling 2009, as in iCaRL): each pick
  brings the mean of the picked features closest to the mean of all; per class when class-conditional.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import balanced_indices
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

    def per_class(self, pick) -> torch.Tensor:
        """``pick(features_of_members, k) -> local indices`` in every class, with the class-balanced
        split of the budget (class-conditional runs), else once over the whole source."""
        src = self.ctx.source
        feats = F.normalize(self.ctx.teacher.represent_cached(src), dim=1)
        if not self.ctx.class_conditional:
            return pick(feats, self.ctx.budget)
        counts = src.labels[self.ctx.initial_indices(self.gen)].bincount(minlength=src.num_classes)
        out = []
        for c in range(src.num_classes):
            members = torch.nonzero(src.labels == c).flatten()
            if counts[c]:
                out.append(members[pick(feats[members], int(counts[c]))])
        return torch.cat(out)

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
        def pick(feats, k):
            return k_center_greedy(feats, k, int(torch.randint(0, len(feats), (1,), generator=self.gen)))
        return self.per_class(pick)


def herding(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of k points chosen greedily so that the running mean of the chosen features tracks the
    mean of all (each point at most once)."""
    mu = features.mean(0)
    chosen = torch.empty(min(k, len(features)), dtype=torch.long, device=features.device)
    total = torch.zeros_like(mu)
    free = torch.ones(len(features), dtype=torch.bool, device=features.device)
    for j in range(len(chosen)):
        # the candidate mean after adding each point; pick the closest to mu
        dist = ((total + features) / (j + 1) - mu).pow(2).sum(1)
        dist[~free] = float("inf")
        i = int(torch.argmin(dist))
        chosen[j] = i
        free[i] = False
        total += features[i]
    return chosen


@register_method
class Herding(_Subset):
    name = "herding"

    def select(self) -> torch.Tensor:
        return self.per_class(lambda feats, k: herding(feats, k))


@register_method
class RandomLabelled(_Subset):
    """Class-balanced random real images with their labels (no teacher, no targets); with a budget below
    the number of classes, one image of each of ``budget`` classes drawn at random."""

    name = "random_labelled"
    needs_teacher = False

    def select(self) -> torch.Tensor:
        src = self.ctx.source
        if not src.labelled:
            from ..errors import DataError
            raise DataError(f"random_labelled needs labels, but {src.name}/{src.split} has none")
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.gen))
        # a budget below the class count: one image of each of `budget` random classes
        return balanced_indices(src.labels.cpu(), self.ctx.budget, seed, fewer_classes=True).to(src.device)

    def export(self) -> DistilledSet:
        src = self.ctx.source
        return DistilledSet(images=src.float(self.idx), labels=src.labels[self.idx].clone(),
                            meta={"source_indices": self.idx.cpu().tolist(), "num_classes": src.num_classes,
                                  "classes": list(src.classes)})
