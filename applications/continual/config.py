"""Config of ``ssdd continual``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill.errors import ConfigError

BUFFER_KINDS = ("none", "reservoir", "class_balanced", "distilled")   # the keys of run.BUFFERS
DISTILLED_MODES = ("experience", "representation", "both", "retrain")


@dataclass
class BufferSpec:
    kind: str = "none"                   # none | reservoir | class_balanced | distilled
    mode: str = "experience"             # experience | retrain (any buffer); representation | both (distilled)
    label: str = ""


def buffer_label(b: BufferSpec) -> str:
    """The buffer's name in tables, plots and run files (``label`` when given)."""
    if b.label:
        return b.label
    if b.kind == "distilled":
        return f"distilled ({b.mode})"
    name = {"none": "naive (no replay)", "reservoir": "reservoir (real)", "class_balanced": "class-balanced (real)"}[b.kind]
    return f"{name}, retrain" if b.mode == "retrain" else name


@dataclass
class DistillSpec:
    method: str = "krr_st"
    steps: int = 200
    teacher: str = "model"                # "model" (the continual model's backbone) or a teacher file
    storage_dtype: str = "uint8"
    params: dict[str, Any] = field(default_factory=lambda: {"pool_arch": "convnet-32-64-128-bn", "pool_size": 4,
                                                            "pool_steps": 100, "real_batch": 256,
                                                            "lr_images": 1e-2, "lr_targets": 1e-2})
    # a method that reads expert trajectories (MKDT, high-loss) trains them on each experience: `ssdd experts`
    # settings (arch, experts, epochs, batch_size, lr, ...); empty: buffers.EXPERTS (4 experts x 6 epochs)
    experts: dict[str, Any] = field(default_factory=dict)


@dataclass
class ContinualConfig:
    benchmark: str = "sample"            # sample | cifar10 | cifar100
    root: str | None = None
    n_experiences: int | None = None     # default: 5 (CIFAR-10, sample), 10 (CIFAR-100)
    train_per_class: int | None = None   # cap the training images per class (CPU runs)
    test_per_class: int | None = None
    arch: str = "convnet-32-64-128-bn"
    epochs: int = 1
    batch_size: int = 64
    batch_size_mem: int | None = None    # replay images per batch (default: batch_size)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    memory_per_class: int = 20           # memory = this many real uint8 images per class, in bytes
    buffers: list[BufferSpec] = field(default_factory=lambda: [BufferSpec("none"), BufferSpec("reservoir"),
                                                               BufferSpec("class_balanced"),
                                                               BufferSpec("distilled", "experience")])
    distill: DistillSpec = field(default_factory=DistillSpec)
    repr_weight: float = 1.0
    retrain_epochs: int = 50             # GDumb-like protocol: epochs of a fresh model on the memory
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    device: str = "auto"
    output: str = "reports/continual"

    def validate(self):
        for b in self.buffers:
            if b.kind not in BUFFER_KINDS:
                raise ConfigError(f"unknown buffer kind '{b.kind}'", fix=f"use one of {BUFFER_KINDS}")
            if b.mode not in DISTILLED_MODES:
                raise ConfigError(f"unknown replay mode '{b.mode}'", fix=f"use one of {DISTILLED_MODES}")
            if b.kind != "distilled" and b.mode in ("representation", "both"):
                raise ConfigError(f"mode '{b.mode}' needs a distilled buffer (stored feature targets)")
            if b.kind == "none" and b.mode == "retrain":
                raise ConfigError("the retrain protocol needs a memory: pick a buffer kind other than none")
        labels = [buffer_label(b) for b in self.buffers]
        twice = sorted({lab for lab in labels if labels.count(lab) > 1})
        if twice:
            raise ConfigError(f"two buffers share the name {twice}: their runs would be merged in the table",
                              fix="give each a distinct `label:`")
        if not self.buffers or not self.seeds:
            raise ConfigError("continual needs at least one buffer and one seed")
        if self.memory_per_class < 1:
            raise ConfigError("memory_per_class must be >= 1")
