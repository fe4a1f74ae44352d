"""The leaderboard's YAML schema: sources, rows, protocols, targets, seeds."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from ..data.config import DataConfig
from ..errors import ConfigError
from ..evaluate.config import TargetConfig, protocol_preset
from ..methods import METHODS, get_method

FULL_SOURCE = "full source"


@dataclasses.dataclass
class RowSpec:
    """One row: a method with params. ``label`` defaults to the method's name."""

    method: str = "random"
    label: str = ""
    steps: int | None = None
    class_conditional: bool = False
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SourceSpec:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    teacher: str = ""                     # teacher file (ssdd teacher)
    train_per_class: int | None = None    # a seeded class-balanced subset of the source split
    budgets: list[int] = dataclasses.field(default_factory=lambda: [100])
    # MKDT's expert trajectories for this source: keys of ExpertsConfig (arch, experts, epochs, ...); data,
    # teacher and train_per_class come from the source. Empty: rows that need experts are skipped.
    experts: dict[str, Any] = dataclasses.field(default_factory=dict)
    # SC-DD's classifier (the recover model and the relabel teacher of the `scdd` protocol): a file made by
    # `ssdd squeeze`, or `squeeze:` keys of SqueezeConfig (epochs, lr, ...) to make it here from the teacher
    classifier: str = ""
    squeeze: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ProtocolSpec:
    name: str = "krrst"                   # a registered protocol (distill/evaluate/protocols)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)   # EvalConfig keys on top of its preset


@dataclasses.dataclass
class LeaderboardConfig:
    """``ssdd leaderboard``: see the module docstring."""

    name: str = "leaderboard"
    sources: list[SourceSpec] = dataclasses.field(default_factory=lambda: [SourceSpec()])
    rows: list[RowSpec] = dataclasses.field(default_factory=list)      # empty: every registered method
    method_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    method_steps: dict[str, int] = dataclasses.field(default_factory=dict)
    variants: list[RowSpec] = dataclasses.field(default_factory=list)
    baselines: list[str] = dataclasses.field(default_factory=lambda: ["random", "random_labelled"])
    full_source: bool = True              # a row pre-trained on the whole source with teacher targets
    full_source_epochs: int | None = None  # its pre-training epochs (None: the protocol's): the equal-compute row
    # a second full-source row pre-trained this many epochs, to convergence: the ceiling that the headroom
    # (full source converged - random) is measured against; None: no such row
    full_source_converged_epochs: int | None = None
    no_pretrain: bool = True
    protocols: list[ProtocolSpec] = dataclasses.field(default_factory=lambda: [ProtocolSpec("krrst"),
                                                                                ProtocolSpec("mkdt")])
    arch: str = "convnet-128-256-512-bn"
    targets: list[TargetConfig] = dataclasses.field(default_factory=lambda: [TargetConfig()])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])   # evaluation seeds
    # every set is made once per distillation seed (baselines too: each seed draws another subset); with more
    # than one, the paired unit of a test is the set seed (its evaluation seeds averaged)
    distill_seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    alpha: float = 0.05                   # significance level of the paired test
    device: str = "auto"
    amp: str = "auto"
    output: str = "reports/leaderboard"

    def validate(self):
        for r in self.all_rows():
            get_method(r.method)
        labels = [row_label(r) for r in self.all_rows()]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ConfigError(f"two rows share the label {twice}", fix="give variants a distinct `label:`")
        missing = [b for b in self.baselines if b not in labels]
        if missing:
            raise ConfigError(f"baselines {missing} are not rows", fix=f"rows are: {', '.join(labels)}")
        for p in self.protocols:
            protocol_preset(p.name)
        if not self.seeds or not self.distill_seeds:
            raise ConfigError("a leaderboard needs at least one seed and one distillation seed")
        if len(set(self.distill_seeds)) != len(self.distill_seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds and distill_seeds must not repeat a seed")

    def all_rows(self) -> list[RowSpec]:
        rows = list(self.rows) or [RowSpec(method=m, steps=self.method_steps.get(m),
                                           params=dict(self.method_params.get(m, {}))) for m in sorted(METHODS)]
        return rows + list(self.variants)


def row_label(r: RowSpec) -> str:
    return r.label or r.method


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


