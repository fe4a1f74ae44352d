"""Shadow runs of the whole pipeline for membership inference: audit points, the private source of each run, the
student a user of the set would train, and the statistic LiRA reads from it.

The audit points are real images that are never in the public part of the source: a class-balanced fixed draw
from the source dataset's held-out (test) split, so the shipped teacher never saw them either. Run r's private
source is the leaderboard's source plus the audit points that ``keep[r]`` marks; every point is in exactly half of
the runs (balanced, as Carlini et al. draw them). A run makes the row's set from its private source, pre-trains a
fresh student on that set exactly as the evaluation protocol does, and scores every audit point:

- a student pre-trained by MSE onto representations: arctanh of the cosine between the student's output and the
  teacher's representation of the point (how well the student reproduces the teacher there);
- a student trained on labels or soft labels: the logit-scaled confidence of the point's true class.
"""
from __future__ import annotations

import dataclasses
import tempfile

import numpy as np
import torch

from distill.data import ImageSet, balanced_indices

from .lira import logit_confidence


def audit_draw(held: ImageSet, points: int, held_out: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint class-balanced index draws from the held-out split: (audit points, held-out images for the copy
    rules). Fixed by ``seed`` (every row and run audits the same points)."""
    if points + held_out > len(held):
        raise ValueError(f"{points} audit points + {held_out} held-out images exceed the {len(held)} held-out images")
    labels = held.labels.cpu()
    idx = balanced_indices(labels, points + held_out, seed).cpu()
    local = balanced_indices(labels[idx], points, seed + 1).cpu()
    audit = idx[local]
    rest = idx[~torch.isin(idx, audit)]
    return audit.sort().values, rest.sort().values


def shadow_masks(runs: int, points: int, seed: int = 0) -> np.ndarray:
    """runs x points membership: every point in exactly half of the runs (runs must be even)."""
    if runs < 4 or runs % 2:
        raise ValueError(f"shadow runs must be an even number >= 4, got {runs}")
    rng = np.random.default_rng(seed)
    keep = np.zeros((runs, points), dtype=bool)
    for j in range(points):
        keep[rng.permutation(runs)[: runs // 2], j] = True
    return keep


def private_source(base: ImageSet, audit: ImageSet, keep_row: np.ndarray) -> ImageSet:
    """The base source with the kept audit points appended (their order in ``audit``)."""
    k = torch.as_tensor(np.flatnonzero(keep_row), dtype=torch.long, device=audit.images.device)
    return dataclasses.replace(base, images=torch.cat([base.images, audit.images[k].to(base.images.device)]),
                               labels=torch.cat([base.labels, audit.labels[k].to(base.labels.device)]))


def start_points(s, n_base: int, keep_row: np.ndarray) -> list[int]:
    """The audit points (indices into the audit draw) that a set started from or selected (its recorded
    ``init_indices`` / ``source_indices`` past the base source)."""
    idx = s.meta.get("init_indices") or s.meta.get("source_indices") or []
    kept = np.flatnonzero(keep_row)
    return sorted({int(kept[i - n_base]) for i in idx if i >= n_base})


@torch.no_grad()
def student_scores(model: torch.nn.Module, kind: str, images: torch.Tensor, labels: torch.Tensor,
                   reps: torch.Tensor | None, batch: int = 500, flip: bool = True) -> np.ndarray:
    """The membership statistic of every audit point for a student trained with loss ``kind`` (mse | ce | kl),
    averaged over the query views: the image and, with ``flip``, its mirror image (the students train with flips;
    Carlini et al. query augmented views, which is much of LiRA's power at low FPR; the mean over views is the
    simple form of their per-view Gaussians)."""
    model.eval()
    views = [images, images.flip(-1)] if flip else [images]
    stats = []
    for v in views:
        out = torch.cat([model(v[i:i + batch].float() / 255 if v.dtype == torch.uint8 else v[i:i + batch]).float()
                         for i in range(0, len(v), batch)])
        if kind == "mse":
            cos = torch.nn.functional.cosine_similarity(out, reps.to(out.device).float(), dim=1)
            stats.append(torch.atanh(cos.clamp(-1 + 1e-6, 1 - 1e-6)))
        else:
            stats.append(logit_confidence(out, labels.to(out.device)))
    return torch.stack(stats).mean(0).cpu().numpy()


def distill_shadow(cfg, spec, row, budget: int, src: ImageSet, teacher, seed: int, experts_defaults: dict,
                   device, amp):
    """The row's set made from a shadow run's private source, in memory, with the row's steps and params; MKDT's
    experts are trained on that private source (in a temporary folder) and SC-DD squeezes its classifier in memory
    from it, so nothing the run ships was made from another source."""
    from distill.methods import DistillConfig, get_method, run_distillation
    method = get_method(row.method)
    params = {k: v for k, v in row.params.items() if k not in ("experts", "classifier")}
    if method.uses_classifier and getattr(spec, "squeeze", None):     # squeezed as the source's classifier is
        params.setdefault("squeeze_epochs", spec.squeeze.get("epochs", 200))
        params.setdefault("squeeze_lr", spec.squeeze.get("lr", 0.06))
    dcfg = DistillConfig(data=spec.data, teacher=None, method=row.method, budget=budget,
                         class_conditional=row.class_conditional, steps=row.steps, seed=seed, device=device, amp=amp,
                         output=None, checkpoint_every=0, log_every=max(1, (row.steps or 10) // 5), params=params)
    with tempfile.TemporaryDirectory(prefix="ssdd-shadow-experts-") as tmp:
        if method.uses_experts:
            from distill.methods.mkdt.experts import ExpertsConfig, train_experts
            ecfg = ExpertsConfig(teacher="<in memory>", device=device, seed=seed, output=tmp, **experts_defaults)
            train_experts(ecfg, source=src, teacher=teacher, quiet=True)
            dcfg = dataclasses.replace(dcfg, params={**params, "experts": tmp})
        res = run_distillation(dcfg, teacher=teacher, source=src, quiet=True)
    return res.set


__all__ = ["audit_draw", "distill_shadow", "private_source", "shadow_masks", "start_points", "student_scores"]
