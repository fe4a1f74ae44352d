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
from .apps import check_params, get_application, is_application

FULL_SOURCE = "full source"


@dataclasses.dataclass
class RowSpec:
    """One row: a method with params. ``label`` defaults to the method's name."""

    method: str = "random"
    label: str = ""
    steps: int | None = None
    class_conditional: bool = False
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    # this row's own budget (None: the source's): e.g. KRR-ST at the bytes of a Boost set of the source's budget
    budget: int | None = None
    # the set as it stood after `at` of its run's `steps` (a save_every snapshot): rows with the same method, params,
    # steps and budget share one run per set seed, so 1x / 3x / 10x the compute cost one 10x run (issue 34's axis)
    at: int | None = None


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
    # an evaluation protocol (distill/evaluate/protocols: krrst, mkdt, scdd, ...) or an application (transfer, kd,
    # continual, nas: distill/leaderboard/apps.py)
    name: str = "krrst"
    # evaluation protocol: EvalConfig keys on top of its preset; application: the keys of its Config
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    # the same protocol twice with other overrides needs a label for its tables and cells (e.g. "scdd e200")
    label: str = ""
    # evaluate only these rows (labels) under this protocol (empty: every row); e.g. the `scdd` protocol's
    # relabelling for SC-DD and the random subset it is compared with
    rows: list[str] = dataclasses.field(default_factory=list)

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclasses.dataclass
class ComparisonSpec:
    """One pre-declared comparison of the primary family: row ``set`` against row ``vs`` under protocol
    ``protocol`` (its name or label), on ``metrics`` (e.g. ``[linear@1%, linear@5%]``; empty: every metric of
    the protocol) of every target."""

    set: str = ""
    vs: str = ""
    protocol: str = ""
    metrics: list[str] = dataclasses.field(default_factory=list)
    # this comparison's set seeds (empty: the leaderboard's distill_seeds); a cheap comparison with a wide spread
    # may run more set seeds than the others (SC-DD's relabel cells cost seconds), its rows only under its protocol
    seeds: list[int] = dataclasses.field(default_factory=list)

    def matches(self, protocol: str, metric: str, label: str, baseline: str) -> bool:
        return (protocol == self.protocol and label == self.set and baseline == self.vs
                and (not self.metrics or metric in self.metrics))


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
    # paper: rows may run at the methods' paper defaults; cpu: every row must state its scale (refused otherwise);
    # auto: like cpu when the leaderboard runs on a CPU, like paper on a GPU
    scale: str = "auto"
    alpha: float = 0.05                   # significance level of the paired test
    device: str = "auto"
    amp: str = "auto"
    output: str = "reports/leaderboard"
    # where the sets, MKDT's experts and SC-DD's classifiers are made or reused (empty: output): another
    # leaderboard's output shares its sets, e.g. the application protocols run on the `cpu` leaderboard's sets
    sets_dir: str = ""
    # also each baseline at the bytes of the largest method set ("random (equal bytes)": more real images, with
    # their targets or labels); a method beats real data at equal storage only if it beats these
    equal_bytes: bool = False
    # run and report only these of `protocols` (by name or label); empty: all. A preset that runs one application
    # of a shared base, e.g. `base: apps_cifar10_cpu.yaml` + `only: [kd]`
    only: list[str] = dataclasses.field(default_factory=list)
    # run and report only these rows (labels; the baselines always stay); empty: all. E.g. one method's part of a
    # campaign in one sitting: `only_rows=[krr_st x1,krr_st x3,krr_st x10]`
    only_rows: list[str] = dataclasses.field(default_factory=list)
    # run and report only these set seeds (of `all_seeds`); empty: all. A campaign's part that one sitting and one
    # machine can finish, e.g. `only_seeds=[3,4]`: a set seed's cells come from one machine, and a cell's key does
    # not depend on which seeds run beside it, so the next sitting's seeds add to the same results folder
    only_seeds: list[int] = dataclasses.field(default_factory=list)
    # the pre-declared primary family (issue 34): the comparisons the run is designed to answer, Holm-corrected among
    # themselves only; every other comparison is secondary (exploratory), corrected within its own table. A primary
    # comparison may pair any two rows (``vs`` need not be a baseline)
    primary: list[ComparisonSpec] = dataclasses.field(default_factory=list)
    # distillation seeds of the rows outside the primary family (empty: ``distill_seeds``), e.g. 10 seeds for the
    # primary rows and the first 3 for the rest
    secondary_seeds: list[int] = dataclasses.field(default_factory=list)
    # the gain (points) and power the primary family is planned for (`ssdd leaderboard --plan`, the table's first line)
    target_gain: float = 2.0
    power: float = 0.8
    # where each cell's small result file is written (and committed: docs/results/<name>); tables can be rendered
    # from this folder alone (`--render-only`). Empty: OUTPUT (cells/, sets/, info.json beside the sets)
    results: str = ""

    def validate(self):
        # the snapshots every run is asked for, before only_rows filters rows: a run made for one snapshot row
        # writes those of its siblings too, so a later sitting with the others reuses it
        self._snapshots = {}
        for r in self.all_rows():
            if r.at is not None:
                self._snapshots.setdefault(run_identity(r, None), set()).add(r.at)
        if self.only:
            titles = [p.title for p in self.protocols]
            unknown = [o for o in self.only if o not in titles]
            if unknown:
                raise ConfigError(f"only: {unknown} are not protocols of this leaderboard",
                                  fix=f"its protocols are: {', '.join(titles)}")
            self.protocols = [p for p in self.protocols if p.title in self.only]
            self.primary = [c for c in self.primary if c.protocol in self.only]
        if self.only_rows:
            every = [row_label(r) for r in self.all_rows()]
            unknown = [o for o in self.only_rows if o not in every]
            if unknown:
                raise ConfigError(f"only_rows: {unknown} are not rows of this leaderboard",
                                  fix=f"rows are: {', '.join(every)}")
            keep = set(self.only_rows) | set(self.baselines)
            self.rows = [r for r in (self.rows or [RowSpec(method=m) for m in sorted(METHODS)]) if row_label(r) in keep]
            self.variants = [r for r in self.variants if row_label(r) in keep]
            # a comparison with a baseline at equal bytes keeps it: that row is made from the kept baseline's set
            self.primary = [c for c in self.primary if all(x in keep or x.removesuffix(EQUAL_BYTES) in self.baselines
                                                           or x in self.reference_rows(c.protocol)
                                                           for x in (c.set, c.vs))]
            for p in self.protocols:      # (a protocol whose rows all go keeps its baselines: rows are kept)
                p.rows = [r for r in p.rows if r in keep] or [b for b in self.baselines if b in p.rows] or p.rows
        for r in self.all_rows():
            get_method(r.method)
        labels = [row_label(r) for r in self.all_rows()]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ConfigError(f"two rows share the label {twice}", fix="give variants a distinct `label:`")
        missing = [b for b in self.baselines if b not in labels]
        if missing:
            raise ConfigError(f"baselines {missing} are not rows", fix=f"rows are: {', '.join(labels)}")
        titles = [p.title for p in self.protocols]
        twice = sorted({t for t in titles if titles.count(t) > 1})
        if twice:
            raise ConfigError(f"protocols {twice} are listed twice", fix="give the second a distinct `label:`")
        for p in self.protocols:
            if is_application(p.name):
                check_params(p.name, p.overrides)
            else:
                protocol_preset(p.name)
        if self.scale not in ("auto", "cpu", "paper"):
            raise ConfigError(f"scale must be auto, cpu or paper, got '{self.scale}'")
        if self.scale == "cpu":
            self.check_scale("cpu")
        if not self.seeds or not self.distill_seeds:
            raise ConfigError("a leaderboard needs at least one seed and one distillation seed")
        if len(set(self.distill_seeds)) != len(self.distill_seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds and distill_seeds must not repeat a seed")
        extra = [s for s in self.secondary_seeds if s not in self.distill_seeds]
        if extra:
            raise ConfigError(f"secondary_seeds {extra} are not in distill_seeds {list(self.distill_seeds)}",
                              fix="secondary rows take a subset of the distillation seeds")
        if self.only_seeds:
            every = self._all_seeds()
            unknown = [d for d in self.only_seeds if d not in every]
            if unknown:
                raise ConfigError(f"only_seeds: {unknown} are not set seeds of this leaderboard",
                                  fix=f"its set seeds are: {', '.join(map(str, every))}")
        known = set(labels) | {b + EQUAL_BYTES for b in self.baselines}
        for i, c in enumerate(self.primary):
            if c.protocol not in titles:
                raise ConfigError(f"primary.{i}: protocol '{c.protocol}' is not a protocol of this leaderboard",
                                  fix=f"its protocols are: {', '.join(titles)}")
            refs = self.reference_rows(c.protocol)       # an application's own rows (reservoir, noise, ...)
            bad = [x for x in (c.set, c.vs) if x not in known | set(refs)]
            if bad:
                raise ConfigError(f"primary.{i}: {bad} are not rows of this leaderboard"
                                  + (f" or references of `{c.protocol}`" if refs else ""),
                                  fix=f"rows are: {', '.join(labels + refs)}")
            if c.set == c.vs:
                raise ConfigError(f"primary.{i} compares {c.set} with itself")
            if len(set(c.seeds)) != len(c.seeds) or any(int(d) != d or d < 0 for d in c.seeds):
                raise ConfigError(f"primary.{i}.seeds must be distinct non-negative integers, got {list(c.seeds)}")
        for p in self.protocols:
            bad = [r for r in p.rows if r not in known]
            if bad:
                raise ConfigError(f"protocol `{p.title}`: rows {bad} are not rows of this leaderboard",
                                  fix=f"rows are: {', '.join(labels)}")
        from ..methods.base import Method
        for r in self.all_rows():
            if r.at is None:
                continue
            if r.steps is None or not 0 < r.at <= r.steps:
                raise ConfigError(f"row {row_label(r)}: at {r.at} must be a step of its run (1 .. steps, {r.steps})",
                                  fix="give the row `steps:` (its run's length) and `at:` at most that")
            if get_method(r.method).total_steps is not Method.total_steps:
                raise ConfigError(f"row {row_label(r)}: method {r.method} counts its stage steps otherwise than "
                                  "`steps`, so a snapshot `at:` is not defined for it", fix="remove `at:` from this row")
            every = self.snapshot_every(r)
            if every and r.steps // every > 100:
                raise ConfigError(f"row {row_label(r)}: the snapshots {sorted(self._snapshots[run_identity(r, None)])} "
                                  f"of a {r.steps}-step run would be saved every {every} steps "
                                  f"({r.steps // every} files)", fix="choose `at:` values with a larger common divisor")
        if not 0 < self.power < 1 or self.target_gain <= 0:
            raise ConfigError(f"power must be in (0, 1) and target_gain positive, got {self.power}, {self.target_gain}")

    def snapshot_every(self, row: RowSpec, budget: int | None = None) -> int:
        """``save_every`` of the run behind snapshot row ``row``: the greatest common divisor of every snapshot
        declared for that run (0 when the only one is the end)."""
        import math
        ats = getattr(self, "_snapshots", {}).get(run_identity(row, None)) or {row.at}
        every = math.gcd(*sorted(ats))
        return 0 if every == row.steps else every

    def reference_rows(self, protocol: str) -> list[str]:
        """The reference rows an application protocol adds (by its title; empty for an evaluation protocol)."""
        spec = next((p for p in self.protocols if p.title == protocol), None)
        if spec is None or not is_application(spec.name):
            return []
        return list(get_application(spec.name)(None, spec.overrides).references())

    def _only(self, seeds: list[int]) -> list[int]:
        return [d for d in seeds if d in self.only_seeds] if self.only_seeds else list(seeds)

    def comparison_seeds(self, c: ComparisonSpec) -> list[int]:
        return self._only(list(c.seeds) or list(self.distill_seeds))

    def _all_seeds(self) -> list[int]:
        return list(dict.fromkeys(list(self.distill_seeds) + [d for c in self.primary for d in c.seeds]))

    def all_seeds(self) -> list[int]:
        """Every set seed of the leaderboard: ``distill_seeds``, then any a primary comparison adds (those of
        ``only_seeds`` when it is given)."""
        return self._only(self._all_seeds())

    def primary_rows(self, protocol: str | None = None) -> set[str]:
        """The labels of the rows a primary comparison reads (under ``protocol``; None: any protocol)."""
        return {x for c in self.primary if protocol is None or c.protocol == protocol for x in (c.set, c.vs)}

    def row_seeds(self, label: str, protocol: str | None = None) -> list[int]:
        """The distillation seeds of row ``label`` (evaluated under ``protocol``; None: for its set): every one for
        the rows a primary comparison reads (under that protocol), and for all rows when no ``secondary_seeds``
        are given; else ``secondary_seeds``. Empty when the protocol's ``rows`` leave the row out."""
        if protocol is not None:
            spec = next((p for p in self.protocols if p.title == protocol), None)
            if spec is not None and spec.rows and label not in spec.rows:
                return []
        order = self.all_seeds()
        if protocol is None:
            # a baseline's set is also made at the seeds of its equal-bytes row, which is sized from it (the
            # baseline itself is evaluated at its own seeds only)
            eq = [label + EQUAL_BYTES] if self.equal_bytes and label in self.baselines else []
            return sorted({d for p in self.protocols for x in [label, *eq] for d in self.row_seeds(x, p.title)},
                          key=order.index)
        base = label.removesuffix(EQUAL_BYTES)
        reading = [c for c in self.primary if c.protocol == protocol and (label in (c.set, c.vs)
                                                                          or base in (c.set, c.vs))]
        if reading:      # the union of the seeds of the primary comparisons that read this row under this protocol
            return sorted({d for c in reading for d in self.comparison_seeds(c)}, key=order.index)
        if not self.secondary_seeds:
            return self._only(self.distill_seeds)
        return self._only(self.secondary_seeds)

    def all_rows(self) -> list[RowSpec]:
        """Every row with the preset's method settings: ``rows`` (empty: one per registered method) and
        ``variants``; a row inherits ``method_steps`` / ``method_params`` of its method and overrides them
        key by key with its own ``steps`` / ``params``."""
        rows = list(self.rows) or [RowSpec(method=m) for m in sorted(METHODS)]
        return [dataclasses.replace(r, steps=r.steps if r.steps is not None else self.method_steps.get(r.method),
                                    params={**self.method_params.get(r.method, {}), **r.params})
                for r in rows + list(self.variants)]

    def paper_scale_rows(self) -> list[str]:
        """The rows that would run at their method's paper-scale defaults: what is not stated, per row."""
        out = []
        for r in self.all_rows():
            m = get_method(r.method)
            missing = [f"steps (default {m.default_steps:,})"] if m.default_steps > 0 and r.steps is None else []
            missing += [k for k in m.paper_scale_params if k not in r.params]
            if missing:
                out.append(f"{row_label(r)}: {', '.join(missing)}")
        return out

    def check_scale(self, device_type: str) -> None:
        """Refuse paper-scale rows under ``scale: cpu`` (or ``auto`` on a CPU), with the fix."""
        if self.scale == "paper" or (self.scale == "auto" and device_type != "cpu"):
            return
        rows = self.paper_scale_rows()
        if rows:
            where = "a CPU preset (scale: cpu)" if self.scale == "cpu" else "a CPU"
            raise ConfigError(f"{len(rows)} row(s) would run at the paper's scale on {where}: " + "; ".join(rows),
                              fix="state them in method_steps / method_params (or the row's steps / params), or set "
                                  "scale: paper to run the paper's settings anyway")


EQUAL_BYTES = " (equal bytes)"


def run_identity(r: RowSpec, budget: int | None) -> str:
    """The run a snapshot row reads: rows with the same method, steps, params, budget and class-conditioning share
    one run per set seed."""
    return _digest([r.method, r.steps, r.params, r.budget or budget, r.class_conditional])


def all_baselines(cfg) -> list[str]:
    """The baselines, and their equal-bytes twins when ``equal_bytes`` is set."""
    return list(cfg.baselines) + ([b + EQUAL_BYTES for b in cfg.baselines] if getattr(cfg, "equal_bytes", False) else [])


def row_label(r: RowSpec) -> str:
    return r.label or r.method


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


