"""A trained classifier file (``ssdd.classifier``): a registry model with its class head.

Used as the teacher of data-free knowledge distillation (applications/kd) and, next, by SC-DD
(backbone + linear head). Trained by :func:`distill.evaluate.train_classifier`.
"""
from __future__ import annotations

from .engine.record import register_record
from .errors import FileFormatError
from .models.record import ModelRecord

KIND = "ssdd.classifier"


@register_record
class Classifier(ModelRecord):
    """A supervised model (``Net`` with a ``num_classes`` head) and where it came from."""

    KIND = KIND
    NOUN = "classifier"
    REQUIRED = ("arch", "num_classes")

    @classmethod
    def out_dim(cls, meta: dict) -> int:
        return int(meta["num_classes"])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    def validate(self, where: str = ""):
        super().validate(where)
        k = self.meta["num_classes"]
        if not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 1_000_000):
            raise FileFormatError(f"{where or self.NOUN}: num_classes must be a positive integer, got {k!r}")
        return self

    def summary(self) -> str:
        m = self.meta
        return "\n".join([f"classifier       {m.get('arch')} ({self.num_classes} classes)",
                          f"resolution       {self.channels} x {self.image_size} x {self.image_size}",
                          f"source           {m.get('source', '?')}",
                          f"test accuracy    {m.get('test_acc', '?')}"])


__all__ = ["Classifier", "KIND"]
