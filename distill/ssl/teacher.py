"""The teacher: a frozen backbone + its normalisation + its representation dimension.

Saved as ``ssdd.teacher`` safetensors: the backbone's weights and a header with everything needed
to rebuild it (architecture, image size, channels, mean/std) and where it came from (source
dataset, SSL method, epochs, k-NN accuracy, config, id = hash of the weights).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..data import ImageSet
from ..data.cache import cache_dir
from ..engine.progress import progress
from ..engine.safefile import load_tensors, save_tensors
from ..errors import DataError
from ..models import Net, create_model

KIND = "ssdd.teacher"


def weights_id(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha1()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class Teacher:
    """A frozen backbone that maps pixel-space images to representations (N x dim)."""

    def __init__(self, model: Net, meta: dict):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.meta = dict(meta)
        self.meta.setdefault("id", weights_id(self.model.state_dict()))

    # --------------------------------------------------------------- facts
    @property
    def dim(self) -> int:
        return self.model.feature_dim

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def channels(self) -> int:
        return int(self.meta.get("in_chans", 3))

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.meta["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.meta["std"])

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def device(self) -> torch.device:
        return self.model.mean.device

    def to(self, device) -> "Teacher":
        self.model.to(device)
        return self

    def describe(self) -> str:
        return (f"{self.meta.get('backbone')} {self.meta.get('ssl', '')} teacher on {self.meta.get('source', '?')} "
                f"({self.dim}-d, id {self.id})")

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
    def save(self, path: str | os.PathLike) -> Path:
        state = self.model.state_dict()
        self.meta["id"] = weights_id(state)
        return save_tensors(path, state, {"format": KIND, "version": 1, **self.meta})

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "Teacher":
        tensors, header = load_tensors(path, KIND, device="cpu")
        from ..errors import FileFormatError
        try:
            model = create_model(header["backbone"], out_dim=0, image_size=int(header["image_size"]),
                                 in_chans=int(header.get("in_chans", 3)), mean=header["mean"], std=header["std"])
            model.load_state_dict(tensors, strict=True)
        except (KeyError, RuntimeError) as e:
            raise FileFormatError(f"{path}: teacher weights do not fit '{header.get('backbone')}' ({e})") from None
        meta = {k: v for k, v in header.items() if k not in ("format", "version")}
        return cls(model.to(device), meta)
