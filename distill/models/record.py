"""Model records: a registry model (``Net``) saved with the header that rebuilds it.

The header's ``arch``, ``image_size``, ``channels``, ``mean``, ``std`` rebuild the model through
:func:`create_model`; the weights are the safetensors body. :class:`~distill.ssl.Teacher` (headless
backbone) and :class:`~distill.classifier.Classifier` (model with its class head) are the two kinds.
"""
from __future__ import annotations

import hashlib
from typing import ClassVar

import torch

from ..engine.record import Record, upgrade_meta, validate_image_spec
from ..errors import FileFormatError
from .registry import Net, create_model


def weights_id(state: dict[str, torch.Tensor]) -> str:
    """A short hash of a state dict (names and bytes)."""
    h = hashlib.sha1()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class ModelRecord(Record):
    """A ``Net`` + its header. Subclasses say how wide the rebuilt head is (:meth:`out_dim`)."""

    REQUIRED: ClassVar[tuple] = ("arch",)

    def __init__(self, model: Net, meta: dict):
        self.model = model
        self.meta = upgrade_meta(dict(meta))

    @classmethod
    def out_dim(cls, meta: dict) -> int:
        return 0

    # shared facts
    @property
    def arch(self) -> str:
        return str(self.meta["arch"])

    @property
    def device(self) -> torch.device:
        return next(iter(self.model.buffers())).device

    def to(self, device):
        self.model.to(device)
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def validate(self, where: str = ""):
        where = where or self.NOUN
        missing = [k for k in self.REQUIRED if k not in self.meta]
        if missing:
            raise FileFormatError(f"{where}: header lacks {', '.join(missing)}")
        validate_image_spec(self.meta, where, required=True)
        return self

    @classmethod
    def build(cls, meta: dict, where: str) -> Net:
        probe = cls.__new__(cls)
        probe.meta = meta
        probe.validate(where)
        try:
            return create_model(str(meta["arch"]), out_dim=cls.out_dim(meta), image_size=int(meta["image_size"]),
                                in_chans=int(meta["channels"]), mean=meta["mean"], std=meta["std"])
        except Exception as e:  # an unknown or malformed architecture name in a file
            raise FileFormatError(f"{where}: cannot build the {cls.NOUN}'s model '{meta.get('arch')}' ({e})") from None

    @classmethod
    def from_file(cls, tensors, meta, where, device="cpu"):
        model = cls.build(meta, where)
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise FileFormatError(f"{where}: the weights do not fit '{meta.get('arch')}' ({first})") from None
        return cls(model.to(device), meta)
