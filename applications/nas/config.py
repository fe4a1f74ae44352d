"""Config of ``ssdd nas``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill.evaluate.config import LinearConfig, PretrainConfig, TargetConfig
from distill.errors import ConfigError


@dataclass
class ProxyConfig:
    """One proxy: pre-train each candidate on this set file, then score it on the labelled split."""

    label: str = "distilled"
    path: str = ""


@dataclass
class ScoreConfig:
    """How a pre-trained candidate is scored: on a labelled split carved from the target's
    training split (``train_per_class`` to fit, a disjoint ``val_per_class`` to score), never the
    test split."""

    method: str = "linear"                # linear | finetune
    train_per_class: int = 100
    val_per_class: int = 50
    linear: LinearConfig = field(default_factory=lambda: LinearConfig(steps=50))
    finetune_iterations: int = 200
    finetune_lr: float = 0.01
    batch_size: int = 128


@dataclass
class GroundTruthConfig:
    """The expensive reference: train each candidate from scratch on the full labelled training
    split, report its test accuracy. Cached on disk by architecture."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    train_per_class: int | None = None    # cap the training split (None: all of it)
    subset_seed: int = 0                  # draws that capped split: the same images for every seed, so that the
                                          # seed-to-seed spread is the training's, not the data's
    cache_dir: str = "runs/nas_ground_truth"


@dataclass
class NASConfig:
    space: str = "convnet"                # convnet | nb201
    space_args: dict[str, Any] = field(default_factory=dict)   # e.g. {depths: [2, 3], cells_per_stage: 1}
    proxies: list[ProxyConfig] = field(default_factory=list)
    target: TargetConfig = field(default_factory=TargetConfig)
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(epochs=100))
    score: ScoreConfig = field(default_factory=ScoreConfig)
    ground_truth: GroundTruthConfig = field(default_factory=GroundTruthConfig)
    strategy: str = "random"              # random | evolution | tpe
    trials: int = 10
    engine: str = "sequential"            # sequential: trials in this process | local: NNI's local training
    concurrency: int = 1                  #   service, `concurrency` trial processes at once (one GPU each on CUDA)
    evaluate_proxy: bool = False          # measure proxy quality on num_archs sampled architectures
    num_archs: int = 10
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"                     # auto | bf16 | off
    output: str = "reports/nas"

    def validate(self):
        if not self.proxies:
            raise ConfigError("nas needs at least one proxy set", fix="proxies=[{label: krr_st, path: set.safetensors}]")
        if self.strategy not in ("random", "evolution", "tpe"):
            raise ConfigError(f"unknown strategy '{self.strategy}'", fix="use random, evolution or tpe")
        if self.score.method not in ("linear", "finetune"):
            raise ConfigError(f"score.method must be linear or finetune, got '{self.score.method}'")
        if self.engine not in ("sequential", "local"):
            raise ConfigError(f"unknown engine '{self.engine}'", fix="use sequential (in-process) or local (NNI's local "
                                                                     "training service, trials in parallel processes)")
        if self.concurrency < 1 or (self.engine == "sequential" and self.concurrency != 1):
            raise ConfigError(f"concurrency {self.concurrency} needs engine=local (the sequential engine runs one trial "
                              "at a time)", fix="set engine=local, or concurrency=1")
        if self.trials < 1 or self.num_archs < 2:
            raise ConfigError("trials must be >= 1 and num_archs >= 2")
