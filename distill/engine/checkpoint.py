"""Atomic training checkpoints in safetensors (no pickles).

A checkpoint is any nested structure of dicts (keys str or int), lists, tuples, tensors, numpy
arrays and JSON scalars: model and optimizer ``state_dict()``s, RNG states, step counters. Tensors
go into the safetensors body; the structure goes into the JSON header, so resuming restores the
exact objects (int keys of optimizer states and tuples of RNG states included).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from .record import Record, register_record

KIND = "ssdd.checkpoint"


def _encode(obj, tensors: dict):
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def _decode(obj, tensors: dict):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__dict__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__float__" in obj:
            return float(obj["__float__"])
        raise ValueError(f"unknown checkpoint node {sorted(obj)}")
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


@register_record
class Checkpoint(Record):
    """A resumable stage's state (see :mod:`.stage`); ``meta`` says which stage and config made it."""

    KIND = KIND
    NOUN = "checkpoint"

    def __init__(self, state: dict, meta: dict | None = None):
        self.state, self.meta = state, {"meta": dict(meta or {})}

    def tensors(self) -> dict[str, torch.Tensor]:
        self._tensors: dict[str, torch.Tensor] = {}
        self.meta["tree"] = _encode(self.state, self._tensors)
        return self._tensors

    def header(self) -> dict:
        self.tensors()
        return super().header()

    def save(self, path) -> Path:
        from .safefile import save_tensors
        header = self.header()
        return save_tensors(path, self._tensors, header)

    @classmethod
    def from_file(cls, tensors, meta, where, device="cpu"):
        try:
            state = _decode(meta["tree"], tensors)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            from ..errors import FileFormatError
            raise FileFormatError(f"{where}: corrupt checkpoint structure ({type(e).__name__})",
                                  fix="delete the checkpoint and start the run again") from None
        obj = cls(state, meta.get("meta") if isinstance(meta.get("meta"), dict) else {})
        obj.created = meta.get("created")
        return obj

    def summary(self) -> str:
        m = self.meta["meta"]
        return "\n".join([f"stage            {m.get('stage', m.get('method', '?'))}",
                          f"step             {self.state.get('step', '?') if isinstance(self.state, dict) else '?'}"])


def save_checkpoint(path: str | os.PathLike, state: dict, meta: dict | None = None) -> Path:
    """Write ``state`` atomically (temp file, fsync, rename)."""
    return Checkpoint(state, meta).save(path)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; ``state["__meta__"]`` holds ``meta``."""
    ck = Checkpoint.load(path, device)
    state = ck.state
    state["__meta__"] = ck.meta["meta"]
    return state
