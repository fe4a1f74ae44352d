"""Evaluation configs, and the protocol presets of the papers resolved through a registry.

A protocol is a YAML preset (``distill/evaluate/protocols/<name>.yaml``) applied under the user's
config: schema defaults <- protocol preset <- YAML file (with its ``base:`` chain) <- options <-
``key=value`` overrides. The protocol is read from the *merged* config, so a YAML file that starts
from ``configs/eval/mkdt.yaml`` gets the ``mkdt`` preset. Register another with
:func:`register_protocol`; the CLI's ``--protocol`` choices come from :func:`list_protocols`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from ..config import load_config, load_yaml_chain
from ..errors import ConfigError
from .relabel import RelabelConfig

PROTOCOL_DIR = Path(__file__).resolve().parent / "protocols"

#: protocol name -> preset YAML file
PROTOCOLS: dict[str, Path] = {p.stem: p for p in sorted(PROTOCOL_DIR.glob("*.yaml"))}


def register_protocol(name: str, preset: str | Path) -> None:
    """Make ``name`` a protocol whose preset is the YAML file ``preset``."""
    PROTOCOLS[name] = Path(preset)


def list_protocols() -> list[str]:
    return sorted(PROTOCOLS)


def protocol_preset(name: str) -> dict:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown evaluation protocol '{name}'", fix=f"use one of {', '.join(list_protocols())}")
    return OmegaConf.to_container(OmegaConf.load(PROTOCOLS[name]), resolve=True) or {}


@dataclasses.dataclass
class PretrainConfig:
    """Pre-training a fresh model on a set: MSE to its targets (CE on labels, KL on soft labels)."""

    epochs: int = 1000
    batch_size: int = 256
    lr: float | None = 0.1                # null: the set's learned lr (MKDT), else 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-3
    schedule: str = "cosine"              # cosine | constant
    loss: str = "auto"                    # auto | mse | ce | kl
    augment: bool = False                 # crop + flip (sets pre-trained by MSE / KL)
    # labelled sets (CE), as the KRR-ST paper pre-trains its supervised "random" row: own lr and augmentation
    ce_lr: float | None = 0.01            # null: as lr
    ce_augment: str = "dsa"               # dsa | crop_flip | none
    # after pre-training, set every BatchNorm's running statistics to the set's own (one pass in train mode,
    # cumulative average): a short pre-training (20 steps under the `mkdt` protocol on a CPU) leaves them far from
    # the layer's real statistics, and a deep net then maps every image to the same eval-mode features
    # (MobileNetV2: a feature spread of 1e-7 against a mean of 0.19, a chance-level probe). Off: the papers' protocol
    recalibrate_bn: bool = False


@dataclasses.dataclass
class FinetuneConfig:
    """Full fine-tuning on a target's labelled training split (SGD, cosine, crop + flip)."""

    enabled: bool = True
    iterations: int = 10_000
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True


@dataclasses.dataclass
class LinearConfig:
    """Linear probe on frozen features: L-BFGS (full batch) solved to a gradient tolerance, or SGD, on label
    fractions. Each result records the solver's iterations and final gradient, and whether it converged."""

    enabled: bool = True
    solver: str = "lbfgs"                 # lbfgs | sgd
    steps: int = 2000                     # L-BFGS: the most iterations (it stops earlier at `tolerance`); SGD: epochs
    tolerance: float = 1e-4               # L-BFGS: stop when the gradient's largest entry is below this
    l2: float = 1e-4                      # L2 penalty on the weights (x ||W||^2)
    lr: float = 0.1                       # SGD only
    batch_size: int = 1024                # SGD only
    label_fractions: list[float] = dataclasses.field(default_factory=lambda: [1.0])
    standardize: bool = True              # z-score features with training-split statistics


@dataclasses.dataclass
class TargetConfig:
    """A target task; images are resized to the set's resolution unless image_size is given."""

    name: str = "sample"
    root: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    finetune_iterations: int | None = None  # overrides finetune.iterations (e.g. 5k for fine-grained sets)
    train_per_class: int | None = None    # a seeded class-balanced subset of the training split (CPU budgets)
    test_per_class: int | None = None     # likewise for the test split (a smaller, noisier test: CPU budgets only)


@dataclasses.dataclass
class EvalConfig:
    """``ssdd evaluate``: pre-train on each set, then fine-tune and/or linear-probe on each target;
    or, with ``relabel.enabled`` (protocol ``scdd``), train a student from scratch on each set's images
    with soft labels and test it on each target's test split (the set's source).

    YAML (configs/eval/*.yaml)::

        protocol: mkdt                 # a registered preset: krrst, mkdt, scdd (list_protocols())
        arch: convnet-128-256-512-bn
        targets: [{name: cifar100, root: /data}]
        seeds: [0, 1, 2]
    """

    protocol: str = "krrst"
    arch: str = "convnet-128-256-512-bn"
    targets: list[TargetConfig] = dataclasses.field(default_factory=lambda: [TargetConfig()])
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    linear: LinearConfig = dataclasses.field(default_factory=LinearConfig)
    relabel: RelabelConfig = dataclasses.field(default_factory=RelabelConfig)   # on: SC-DD's protocol instead
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    no_pretrain_baseline: bool = True     # also report a randomly initialised model
    # under torchrun: jobs = the (set, seed) jobs are split over ranks; data = every rank runs every job and
    # fine-tuning is data-parallel (DDP, SyncBatchNorm, each rank a shard of every batch)
    parallel: str = "jobs"
    device: str = "auto"
    amp: str = "auto"                     # auto | bf16 | off
    output: str = "reports/eval"

    def validate(self):
        from ..engine.device import amp_mode
        from ..models import check_model
        check_model(self.arch, "arch")
        amp_mode(self.amp)
        if not self.targets:
            raise ConfigError("evaluation needs at least one target", fix="targets=[{name: cifar10, root: /data}]")
        if not self.seeds:
            raise ConfigError("evaluation needs at least one seed")
        if self.parallel not in ("jobs", "data"):
            raise ConfigError(f"parallel must be jobs or data, got '{self.parallel}'",
                              fix="jobs: split (set, seed) jobs over ranks; data: DDP fine-tuning inside each job")
        if self.linear.solver not in ("lbfgs", "sgd"):
            raise ConfigError(f"linear.solver must be lbfgs or sgd, got '{self.linear.solver}'")
        if self.pretrain.ce_augment not in ("dsa", "crop_flip", "none"):
            raise ConfigError(f"pretrain.ce_augment must be dsa, crop_flip or none, got '{self.pretrain.ce_augment}'")
        if self.pretrain.loss not in ("auto", "mse", "ce", "kl"):
            raise ConfigError(f"pretrain.loss must be auto, mse, ce or kl, got '{self.pretrain.loss}'")
        if any(not 0 < f <= 1 for f in self.linear.label_fractions):
            raise ConfigError("linear.label_fractions must lie in (0, 1]")
        self.relabel.validate()


def load_eval_config(path=None, overrides: Sequence[str] = (), protocol: str | None = None,
                     extra: dict | None = None) -> EvalConfig:
    """EvalConfig with the protocol's preset under the YAML file (and its ``base:`` chain) and overrides.

    The protocol is, by precedence: a ``protocol=`` override, the ``protocol`` argument (``--protocol``),
    the merged YAML chain's ``protocol`` key, ``krrst``.
    """
    chosen = next((o.split("=", 1)[1] for o in overrides if o.startswith("protocol=")), None) or protocol
    if chosen is None and extra and extra.get("protocol"):
        chosen = extra["protocol"]
    if chosen is None and path is not None:
        chosen = load_yaml_chain(path).get("protocol")
    chosen = chosen or "krrst"
    preset = protocol_preset(chosen)
    extra = {**(extra or {}), "protocol": chosen}
    return load_config(EvalConfig, path, overrides, extra=extra, preset=preset)
