"""The interface every distillation method implements, and the registry.

A method is constructed with its own typed config and a :class:`DistillContext` (source data on
the device, teacher, budget, seed), then the runner calls ``setup()``, ``step(i)`` for each outer
step, and ``export()``. ``state_dict()`` / ``load_state_dict()`` make it checkpointable, so a
resumed run ends exactly where an uninterrupted one does.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..data import ImageSet, balanced_indices
from ..distilled import DistilledSet
from ..errors import ConfigError, DataError
from ..ssl.teacher import Teacher


@dataclass
class NoParams:
    """A method without settings of its own."""


@dataclass
class DistillContext:
    source: ImageSet                 # on ``device``
    teacher: Teacher | None
    budget: int
    steps: int
    device: torch.device
    seed: int = 0
    amp: str = "auto"
    class_conditional: bool = False
    verbose: bool = False            # print what long setup phases do (off for in-memory runs)

    def initial_indices(self, generator: torch.Generator, count: int | None = None) -> torch.Tensor:
        """``count`` (default: ``budget``) source indices: class-balanced when class-conditional, else uniform."""
        n = len(self.source)
        count = self.budget if count is None else count
        if count > n:
            what = "budget" if count == self.budget else "the number of images"
            raise DataError(f"{what} {count} exceeds the {n} images of {self.source.name}/{self.source.split}")
        if self.class_conditional:
            if not self.source.labelled:
                raise DataError(f"class_conditional needs labels, but {self.source.name}/{self.source.split} has none")
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            return balanced_indices(self.source.labels.cpu(), count, seed).to(self.source.device)
        return torch.randperm(n, generator=generator)[:count].to(self.source.device)


class Method:
    name: str = ""
    Config: type = NoParams
    default_steps: int = 0
    needs_teacher: bool = True
    #: ``params`` keys that may change when a run is resumed (they do not change what is computed)
    resume_mutable: tuple[str, ...] = ()
    #: ``params`` for a run of seconds on a few dozen images (the resume contract test runs every
    #: registered method with them)
    tiny_params: dict = {}
    #: reads expert trajectories through ``params.experts`` (MKDT, high_loss); the leaderboard fills it in
    uses_experts: bool = False
    #: reads an SC-DD classifier through ``params.classifier`` (scdd); the leaderboard fills it in
    uses_classifier: bool = False
    #: its sets store parts (bases, coefficients, view networks) that ``materialize()`` expands into more images
    #: than its budget; a memory of fixed bytes counts what it stores (``storage_bytes``), in image-equivalents of
    #: float32 images (Boost)
    factorised: bool = False
    #: under torchrun: False, every rank runs the one collective stage (KRR-ST, Boost, MKDT); True, the
    #: method splits its work by ``params.worker`` / ``params.workers`` and :meth:`merge` joins the parts
    splits_work: bool = False
    #: ``params`` whose defaults are the paper's (GPU) scale: a leaderboard on a CPU refuses a row of this
    #: method that does not state them (nor its steps, when ``default_steps`` > 0) unless ``scale: paper``
    paper_scale_params: tuple[str, ...] = ()

    def __init__(self, cfg, ctx: DistillContext):
        self.cfg = cfg
        self.ctx = ctx

    @classmethod
    def tiny_setup(cls, folder, source, teacher) -> dict:
        """Extra ``params`` for a tiny run on ``source`` (files the method reads, made in ``folder``)."""
        return {}

    @classmethod
    def merge(cls, parts: list[DistilledSet], where: list[str]) -> DistilledSet:
        """The set one process writes, from the parts of a split run (``splits_work``)."""
        raise NotImplementedError(f"{cls.name} does not split its work")

    def total_steps(self) -> int:
        """How many stage steps the run takes (default: ``steps``; SC-DD: batches x iterations)."""
        return self.ctx.steps

    def setup(self, fresh: bool = True) -> None:
        """Build the initial state; ``fresh=False`` when a checkpoint will be loaded right after."""

    def step(self, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{self.name} has no iterative steps")

    def export(self) -> DistilledSet:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'", fix=f"use one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_config(method: type[Method], params: dict[str, Any]):
    """The method's typed config from the ``params`` dict (unknown keys are an error)."""
    from ..config import load_config
    try:
        return load_config(method.Config, extra=dict(params or {}))
    except ConfigError as e:
        valid = [f.name for f in dataclasses.fields(method.Config)]
        unknown = "unknown config key" in e.what
        raise ConfigError(f"method '{method.name}': {e.what.replace('(in command-line options)', '(in params)')}",
                          fix=f"valid params: {', '.join(valid) or '(none)'}" if unknown else e.fix) from None
