"""A trained classifier file (``ssdd.classifier``): a registry model with its head, for KD teachers."""
from __future__ import annotations

import os
from pathlib import Path


from distill.data import ImageSet
from distill.engine import seed_everything
from distill.engine.safefile import load_tensors, save_tensors
from distill.errors import FileFormatError
from distill.evaluate import accuracy, finetune
from distill.config import FinetuneConfig
from distill.models import Net, create_model

KIND = "ssdd.classifier"


class Classifier:
    """A supervised model (``Net`` with a ``num_classes`` head) and where it came from."""

    def __init__(self, model: Net, meta: dict):
        self.model, self.meta = model, dict(meta)

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    def to(self, device) -> "Classifier":
        self.model.to(device)
        return self

    def save(self, path: str | os.PathLike) -> Path:
        return save_tensors(path, self.model.state_dict(), {"format": KIND, "version": 1, **self.meta})

    @classmethod
    def load(cls, path: str | os.PathLike, device="cpu") -> "Classifier":
        tensors, header = load_tensors(path, KIND)
        try:
            model = create_model(header["arch"], out_dim=int(header["num_classes"]), image_size=int(header["image_size"]),
                                 in_chans=int(header.get("in_chans", 3)), mean=header["mean"], std=header["std"])
            model.load_state_dict(tensors, strict=True)
        except (KeyError, RuntimeError) as e:
            raise FileFormatError(f"{path}: classifier weights do not fit '{header.get('arch')}' ({e})") from None
        return cls(model.to(device), {k: v for k, v in header.items() if k not in ("format", "version")})


def train_classifier(arch: str, train: ImageSet, test: ImageSet, iterations: int, lr: float = 0.05,
                     batch_size: int = 128, weight_decay: float = 5e-4, seed: int = 0, amp: bool = True) -> Classifier:
    """Supervised training from scratch (SGD, cosine, crop + flip); the test accuracy goes in the header."""
    seed_everything(seed)
    model = create_model(arch, out_dim=train.num_classes, image_size=train.image_size, in_chans=train.channels,
                         mean=train.mean, std=train.std).to(train.device)
    acc = finetune(model, train, test, FinetuneConfig(iterations=iterations, lr=lr, batch_size=batch_size,
                                                      weight_decay=weight_decay), amp=amp, desc=f"train {arch}")
    meta = {"arch": arch, "num_classes": train.num_classes, "image_size": train.image_size, "in_chans": train.channels,
            "mean": list(train.mean), "std": list(train.std), "source": train.name, "iterations": iterations,
            "test_acc": round(acc, 2), "seed": seed, "classes": list(train.classes)}
    return Classifier(model, meta)


def test_accuracy(clf: Classifier, test: ImageSet, amp: bool = True) -> float:
    return accuracy(clf.model, test, amp=amp)


__all__ = ["Classifier", "KIND", "test_accuracy", "train_classifier"]
