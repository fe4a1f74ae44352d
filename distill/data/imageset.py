"""In-memory image sets: one uint8 tensor (N x C x H x W) plus labels, movable to the GPU."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import torch
import torch.nn.functional as F


@dataclass
class ImageSet:
    """A decoded split of a dataset, held in memory as uint8.

    ``images`` are N x C x H x W uint8 (0-255); :meth:`float` gives [0, 1] pixel space, the
    toolkit's convention. ``labels`` are int64 with -1 for unlabelled examples. ``mean``/``std``
    are the normalisation of this dataset at this resolution (models apply it, images never
    carry it).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str] = field(default_factory=list)
    name: str = ""
    split: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"ImageSet.images must be uint8 N x C x H x W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels {tuple(self.labels.shape)} do not match {self.images.shape[0]} images")
        self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (f"ImageSet({self.name}/{self.split}: {len(self)} images, {self.channels}x{self.image_size}px, "
                f"{self.num_classes} classes, {self.device})")

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def labelled(self) -> bool:
        return bool((self.labels >= 0).all())

    def to(self, device: str | torch.device) -> "ImageSet":
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def subset(self, index) -> "ImageSet":
        index = torch.as_tensor(index, dtype=torch.long, device=self.images.device)
        return replace(self, images=self.images[index], labels=self.labels[index])

    def float(self, index=None) -> torch.Tensor:
        """Images (or ``images[index]``) as float32 in [0, 1]."""
        x = self.images if index is None else self.images[index]
        return x.float().div_(255.0)

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(float images, labels) batches, indexed on the set's own device (no DataLoader)."""
        n = len(self)
        order = (torch.randperm(n, generator=generator).to(self.device) if shuffle
                 else torch.arange(n, device=self.device))
        stop = n - (n % batch_size) if drop_last else n
        for i in range(0, stop, batch_size):
            idx = order[i:i + batch_size]
            yield self.float(idx), self.labels[idx]

    def resized(self, size: int) -> "ImageSet":
        if size == self.image_size:
            return self
        return replace(self, images=resize_uint8(self.images, size))


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Antialiased bilinear resize of a uint8 batch to size x size (in chunks to bound memory)."""
    out = []
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    if not out:
        return images.new_zeros((0, images.shape[1], size, size))
    return torch.cat(out)
