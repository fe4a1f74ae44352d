"""Tensor cache: a dataset split decoded once is stored as safetensors and loads in seconds after.

Key: source name, resolved root, split, image size and a cheap fingerprint of the files (sizes and
modification times), so editing the data invalidates the entry. Location: ``$SSDD_CACHE_DIR`` or
``~/.cache/ssdd/datasets``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..engine.safefile import load_tensors, save_tensors
from ..errors import UserError
from .sources import RawSplit

KIND = "ssdd.dataset_cache"


def cache_dir() -> Path:
    base = os.environ.get("SSDD_CACHE_DIR")
    return Path(base).expanduser() if base else Path.home() / ".cache" / "ssdd" / "datasets"


def cache_path(source: str, root: Path | None, split: str, size: int | None, fingerprint: str) -> Path:
    ident = f"{source}|{Path(root).resolve() if root else ''}|{split}|{size}|{fingerprint}"
    digest = hashlib.sha1(ident.encode()).hexdigest()[:16]
    return cache_dir() / f"{source}-{split.replace('+', '_')}-{size or 'native'}-{digest}.safetensors"


def load_cached(path: Path) -> RawSplit | None:
    if not path.exists():
        return None
    try:
        tensors, header = load_tensors(path, KIND)
    except UserError:
        return None  # a damaged cache entry is simply rebuilt
    return RawSplit(tensors["images"], tensors["labels"], list(header["classes"]))


def store_cached(path: Path, raw: RawSplit, info: dict) -> Path | None:
    try:
        return save_tensors(path, {"images": raw.images, "labels": raw.labels.to(torch.int64)},
                            {"format": KIND, "version": 1, "classes": raw.classes, **info})
    except (OSError, UserError):
        return None  # a read-only cache folder must not stop the run
