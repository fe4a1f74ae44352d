"""The teacher: a frozen backbone + its normalisation + its representation dimension.

Saved as ``ssdd.teacher`` (a model record, :mod:`distill.models.record`): the backbone's weights and
a header with everything needed to rebuild it (``arch``, image size, channels, mean/std) and where
it came from (source dataset, SSL method, epochs, k-NN accuracy, config, id = hash of the weights).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..data import ImageSet
from ..data.cache import cache_dir
from ..engine.progress import progress
from ..engine.record import register_record
from ..engine.safefile import load_tensors, save_tensors
from ..errors import DataError, UserError
from ..models import Net
from ..models.record import ModelRecord, weights_id

KIND = "ssdd.teacher"


@register_record
class Teacher(ModelRecord):
    """A frozen backbone that maps pixel-space images to representations (N x dim)."""

    KIND = KIND
    NOUN = "teacher"

    def __init__(self, model: Net, meta: dict):
        super().__init__(model.eval(), meta)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.meta.setdefault("id", weights_id(self.model.state_dict()))
        self.meta.setdefault("dim", self.model.feature_dim)

    # --------------------------------------------------------------- facts
    @property
    def dim(self) -> int:
        return self.model.feature_dim

    @property
    def id(self) -> str:
        return self.meta["id"]

    def describe(self) -> str:
        return (f"{self.meta.get('arch')} {self.meta.get('ssl', '')} teacher on {self.meta.get('source', '?')} "
                f"({self.dim}-d, id {self.id})")

    def summary(self) -> str:
        m = self.meta
        lines = [f"teacher          {self.describe()}",
                 f"resolution       {self.channels} x {self.image_size} x {self.image_size}"]
        for k in ("ssl", "epochs", "knn_top1", "seed", "created", "code_version"):
            if k in m:
                lines.append(f"{k:<16} {m[k]}")
        return "\n".join(lines)

    # --------------------------------------------------------------- use
    def check_images(self, ds_channels: int, ds_size: int, what: str = "data") -> None:
        if ds_channels != self.channels:
            raise DataError(f"{what} has {ds_channels} channel(s) but the teacher takes {self.channels}")
        if ds_size != self.image_size:
            raise DataError(f"{what} is {ds_size} px but the teacher was trained at {self.image_size} px",
                            fix=f"load the data with image_size={self.image_size}")

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Representations of a float pixel-space batch (eval mode, fp32 output)."""
        from ..engine.device import autocast
        with autocast(x.device):
            return self.model.embed(x).float()

    @torch.no_grad()
    def represent(self, ds: ImageSet, batch_size: int = 512, desc: str = "teacher features") -> torch.Tensor:
        """Unaugmented representations of every image of ``ds`` (row i = example i), on ds.device."""
        self.check_images(ds.channels, ds.image_size, f"{ds.name}/{ds.split}")
        self.model.to(ds.device)
        out = [self.encode(ds.float(torch.arange(i, min(i + batch_size, len(ds)), device=ds.device)))
               for i in progress(range(0, len(ds), batch_size), desc=desc)]
        return torch.cat(out)

    def represent_cached(self, ds: ImageSet, batch_size: int = 512) -> torch.Tensor:
        """:meth:`represent`, stored in the dataset cache keyed by teacher id and the data."""
        stride = max(1, len(ds) // 512)
        fp = hashlib.sha1(ds.images[::stride].cpu().numpy().tobytes() + ds.labels.cpu().numpy().tobytes())
        path = cache_dir() / f"reps-{self.id}-{ds.name}-{ds.split}-{len(ds)}-{fp.hexdigest()[:12]}.safetensors"
        if path.exists():
            try:
                tensors, _ = load_tensors(path, "ssdd.representations", device=ds.device)
                return tensors["reps"]
            except Exception:  # a damaged cache entry is rebuilt
                pass
        reps = self.represent(ds, batch_size)
        try:
            save_tensors(path, {"reps": reps}, {"format": "ssdd.representations", "version": 1, "teacher": self.id})
        except OSError:
            pass
        return reps

    # --------------------------------------------------------------- files
    @classmethod
    def load(cls, path: str | os.PathLike, device="cpu") -> "Teacher":
        """A teacher file, or a shipped teacher by zoo name (``cifar10-convnet-simclr``; checked against its
        sha256). A missing file says how to get a teacher."""
        from .. import zoo
        path = zoo.resolve(str(path) if isinstance(path, str) else path)
        if not Path(path).exists():
            shipped = ", ".join(zoo.names()) or "none yet"
            raise UserError(f"{path}: no such teacher file",
                            fix=f"name a shipped teacher instead ({shipped}; `ssdd teachers` lists them), or train one: "
                                "ssdd teacher -c configs/teacher/<dataset>_cpu.yaml data.root=DATA output=" + str(path))
        return super().load(path, device)

    def save(self, path: str | os.PathLike) -> Path:
        self.meta["id"] = weights_id(self.model.state_dict())
        return super().save(path)
