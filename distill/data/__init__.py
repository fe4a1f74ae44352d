"""Data layer: :func:`load_dataset`, normalisation, GPU batch augmentation, label subsets.

    ds = load_dataset("cifar100", root="/data", split="train")   # ImageSet, uint8 in memory
    ds = ds.to("cuda")                                            # stays on the GPU
    x = ds.float(idx)                                             # [0, 1] pixel space
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import DataError
from .cache import cache_path, load_cached, store_cached
from .imageset import ImageSet, resize_uint8
from .normalization import NORMALIZATION, compute_normalization, lookup_normalization, normalize
from .sources import SOURCES, RawSplit, get_source, register_source
from .subsets import balanced_indices, label_subset

__all__ = [
    "ImageSet",
    "load_source",
    "NORMALIZATION",
    "SOURCES",
    "balanced_indices",
    "compute_normalization",
    "label_subset",
    "list_datasets",
    "load_dataset",
    "lookup_normalization",
    "normalize",
    "register_source",
    "resize_uint8",
]


def list_datasets() -> dict[str, str]:
    return {name: src.help for name, src in sorted(SOURCES.items())}


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", image_size: int | None = None,
                 *, download: bool = False, cache: bool = True, device: str | torch.device | None = None,
                 channels: int | None = None, verbose: bool = False) -> ImageSet:
    """Load one split of a dataset as an in-memory :class:`ImageSet`.

    name: a registered source (``cifar10``, ``cifar100``, ``stl10``, ``tinyimagenet``, ``imagefolder``,
      ``npz``, ``sample``, ``fgvc_aircraft``, ``stanford_cars``, ``flowers102``, ``cub200``,
      ``stanford_dogs``). root: its folder (or file for ``npz``). image_size: resize to this many
      pixels square (default: the source's native size). download: allow torchvision to fetch it
      (never done otherwise). cache: read/write the tensor cache. channels: expected channel count;
      a mismatch is an error.
    """
    src = get_source(name)
    if split not in src.splits:
        raise DataError(f"dataset '{src.name}' has no split '{split}'", fix=f"use one of: {', '.join(src.splits)}")
    if image_size is not None and (int(image_size) != image_size or image_size < 8):
        raise DataError(f"image size {image_size} is not a size in pixels (>= 8)")
    root_path = Path(root).expanduser() if root is not None else None
    decode_size = src.native_size is None and image_size or None  # sources of varying size decode at the target size
    raw: RawSplit | None = None
    cpath = None
    t0 = time.time()
    if cache and src.fingerprint is not None and root_path is not None and root_path.exists():
        cpath = cache_path(src.name, root_path, split, decode_size, src.fingerprint(root_path, split))
        raw = load_cached(cpath)
        if verbose and raw is not None:
            print(f"{src.name}/{split}: loaded from cache {cpath}")
    if raw is None:
        raw = src.read(root_path, split, decode_size, download)
        if cpath is not None:
            written = store_cached(cpath, raw, {"source": src.name, "split": split})
            if verbose and written:
                print(f"{src.name}/{split}: decoded in {time.time() - t0:.1f}s, cached at {written}")
    images = raw.images
    if images.shape[0] == 0:
        raise DataError(f"dataset '{src.name}' split '{split}' under {root_path} is empty")
    if channels is not None and images.shape[1] != channels:
        raise DataError(f"dataset '{src.name}' has {images.shape[1]} channel(s), expected {channels}",
                        fix="use a dataset with matching channels or change the model's input channels")
    if image_size is not None and images.shape[-1] != image_size:
        images = resize_uint8(images, image_size)
    size = images.shape[-1]
    mean, std = lookup_normalization(src.name, size) or compute_normalization(images)
    ds = ImageSet(images=images, labels=raw.labels, classes=list(raw.classes), name=src.name, split=split,
                  mean=tuple(mean), std=tuple(std))
    return ds.to(device) if device is not None else ds


def with_normalization(ds: ImageSet, mean, std) -> ImageSet:
    """The same images, labelled with another normalisation (e.g. the source's, for a target set)."""
    return replace(ds, mean=tuple(mean), std=tuple(std))


def load_source(data, train_per_class: int | None = None, device="cpu") -> ImageSet:
    """The dataset a ``data:`` section (:class:`~distill.data.config.DataConfig`) names, cut to a seeded
    class-balanced subset of ``train_per_class`` images per class when given (seed 0: every job that
    names the same subset gets the same images in the same order), on ``device``."""
    src = load_dataset(data.name, data.root, data.split, data.image_size, download=data.download, cache=data.cache)
    if train_per_class:
        src = src.subset(label_subset(src.labels.cpu(), per_class=train_per_class, seed=0))
    return src.to(device)
