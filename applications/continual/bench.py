"""Continual replay as a leaderboard protocol: each row's method fills a class-incremental replay memory
(Avalanche), beside reservoir, class-balanced and herding buffers of real images, all of the same bytes.

How a method fills a buffer that grows by experience: the row's method distils each experience as it ends,
class-conditionally, into that experience's share of the memory (older shares shrink class-balanced to make
room; :class:`applications.continual.buffers.DistilledBuffer`), with the row's steps and params. The set the
leaderboard made from the whole source is not used here: it would hold every class before the stream shows
them. A method that reads expert trajectories (MKDT, high-loss) has them trained on each experience, regressing
the same teacher, with the source's ``experts:`` settings (arch, experts, epochs; default 4 x 6 epochs), in a
folder deleted afterwards; one that reads a classifier (SC-DD) squeezes a linear head on the teacher over the
experience's classes.
A factorised method (Boost) gets a fixed share of the bytes per experience, counted as what its set stores
(bases, coefficients, networks in float32), and keeps every image that set expands into.

YAML (a leaderboard protocol)::

    - name: continual
      overrides:
        modes: [experience, retrain]    # experience replay; a fresh model retrained on the memory (GDumb-like)
        references: [reservoir, class_balanced, herding]   # real-image buffers of the same bytes; add `naive`
                                        # (no replay, experience replay only) to show the table's headroom
        distill_steps: 50               # each per-experience distillation; null: the row's own steps
        storage_dtype: uint8
        experts: {experts: 2, epochs: 4}   # per-experience experts (MKDT, high-loss); over the source's settings
        run:                            # `ssdd continual` settings; benchmark and caps default to the first target
          n_experiences: null           # cifar10 -> 5, cifar100 -> 10
          train_per_class: 500          # caps of the stream (CPU); null: the target's / the whole split
          memory_per_class: 20          # bytes of this many uint8 real images per class
          epochs: 1

Metrics: ``<mode> final acc`` (average accuracy over all experiences at the end) and ``<mode> forgetting``
(average forgetting, lower is better).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from distill.config import load_config, to_dict
from distill.errors import ConfigError
from distill.leaderboard.apps import Application
from distill.methods import get_method

from .benchmarks import split_benchmark
from .buffers import EXPERTS, EXPERTS_OWN, expert_settings
from .config import BufferSpec, ContinualConfig, DistillSpec
from .run import run_one

REFERENCES = ("reservoir", "class_balanced", "herding", "naive")
LABELS = {"reservoir": "reservoir (real)", "class_balanced": "class-balanced (real)", "herding": "herding (real)",
          "naive": "naive (no replay)"}
#: the lower reference: no memory at all (what replay adds is the table's headroom); not a real-image baseline
NAIVE = LABELS["naive"]
MODES = {"experience": "ER", "retrain": "retrain"}


#: ContinualConfig keys the protocol sets itself (from the rows, the references and the leaderboard)
OWN_KEYS = ("buffers", "distill", "seeds", "device", "output")


@dataclass
class ContinualBenchConfig:
    modes: list[str] = field(default_factory=lambda: ["experience", "retrain"])
    references: list[str] = field(default_factory=lambda: ["reservoir", "class_balanced", "herding"])
    # keys of `ssdd continual`'s ContinualConfig (arch, epochs, batch_size, lr, memory_per_class, ...; its
    # defaults); benchmark, root, train_per_class and test_per_class default to the leaderboard's first target
    run: dict[str, Any] = field(default_factory=dict)
    storage_dtype: str = "uint8"
    # steps of each per-experience distillation (methods that take steps); null: the row's own steps, which
    # were sized for one distillation of the whole source, not one per experience
    distill_steps: int | None = None
    # experts trained on each experience for a method that reads trajectories (MKDT, high-loss): `ssdd experts`
    # settings (arch, experts, epochs, batch_size, lr, momentum, weight_decay, dtype) over the source's
    # `experts:` settings (its folder aside) and buffers.EXPERTS
    experts: dict[str, Any] = field(default_factory=dict)

    def validate(self):
        bad = [m for m in self.modes if m not in MODES] + [r for r in self.references if r not in REFERENCES]
        if bad:
            raise ConfigError(f"unknown mode(s) / reference(s) {bad}",
                              fix=f"modes: {list(MODES)}; references: {list(REFERENCES)}")
        if not self.modes:
            raise ConfigError("continual needs at least one mode", fix=f"modes: {list(MODES)}")
        own = sorted(set(self.run) & set(OWN_KEYS))
        if own:
            raise ConfigError(f"run: {own} are set by the leaderboard (rows, references, seeds, device)",
                              fix="leave them out of run:")
        load_config(ContinualConfig, None, extra=self.run)      # unknown keys and types, named
        bad = sorted(set(self.experts) - set(expert_settings()))
        if bad:
            raise ConfigError(f"experts: {bad} are not settings of per-experience experts",
                              fix=f"use {expert_settings()}")


class ContinualApp(Application):
    name = "continual"
    Config = ContinualBenchConfig
    uses_sets = False

    @property
    def lower_better(self):
        return tuple(f"{MODES[m]} forgetting" for m in self.p.modes)

    def _config(self, distill: DistillSpec | None = None) -> ContinualConfig:
        _, (_, _, t) = next(iter(self.ctx.targets.items()))
        target = {"benchmark": t.name, "root": t.root, "train_per_class": t.train_per_class,
                  "test_per_class": t.test_per_class}
        c = load_config(ContinualConfig, None, extra={**target, **self.p.run, "device": self.ctx.cfg.device})
        return dataclasses.replace(c, distill=distill) if distill is not None else c

    def prepare(self) -> str:
        c = self._config()
        self.bench = split_benchmark(c.benchmark, c.root, c.n_experiences, seed=0, train_per_class=c.train_per_class,
                                     test_per_class=c.test_per_class)
        with_experts = sorted({r.method for r in self.ctx.cfg.all_rows() if get_method(r.method).uses_experts})
        with_clf = sorted({r.method for r in self.ctx.cfg.all_rows() if get_method(r.method).uses_classifier})
        return (f"Continual replay: split {self.bench.name}, {self.bench.n_experiences} experiences, `{c.arch}`, "
                f"{c.epochs} epoch(s) per experience; memory = {c.memory_per_class} uint8 real images per class in "
                f"bytes for every buffer; each method distils each experience into its share as it ends"
                + (f" ({self.p.distill_steps} steps each)" if self.p.distill_steps is not None else "") + "; modes "
                f"{', '.join(self.p.modes)}; references {', '.join(r for r in self.p.references if r != 'naive')} "
                "(real images)"
                + ("; naive: no memory at all (experience replay only), the floor that replay lifts"
                   if "naive" in self.p.references else "")
                + (f"; {', '.join(with_experts)}: experts trained on each experience ({self._experts_text()})"
                   if with_experts else "")
                + (f"; {', '.join(with_clf)}: a linear head squeezed on the teacher per experience" if with_clf else "")
                + ".")

    def _experts(self) -> dict:
        """Per-experience experts: the protocol's `experts:` over the source's (not its folder) and the buffer's
        defaults."""
        source = {k: v for k, v in (self.ctx.spec.experts or {}).items() if k not in EXPERTS_OWN}
        return {**EXPERTS, **source, **self.p.experts}

    def key(self) -> dict:
        # `experts` concerns only the rows that read trajectories: it is in their row_key, not every cell's key
        return {k: v for k, v in to_dict(self.p).items() if k != "experts"}

    def _experts_text(self) -> str:
        e = self._experts()
        return f"{e['experts']} x {e['epochs']} epochs of `{e['arch']}`"

    def row_key(self, row):
        # a method's memory is made with its experts or its squeezed classifier: part of its cells' identity
        if row is None:
            return None
        m = get_method(row.method)
        if m.uses_experts:
            return {"experts": self._experts()}
        return {"classifier": "squeezed per experience"} if m.uses_classifier else None

    def references(self) -> dict[str, bool]:
        return {LABELS[r]: r != "naive" for r in self.p.references}

    def cell(self, label, s, seed, set_seed, row) -> list[dict]:
        run_seed = seed       # the unit's seed (the leaderboard's unit_seed: evaluation seed + 1000 x set seed)
        rows = []
        for mode in self.p.modes:
            if label == NAIVE and mode != "experience":     # no memory to retrain from
                continue
            if row is not None:
                spec = BufferSpec("distilled", mode, label)
                method = get_method(row.method)
                steps = row.steps if row.steps is not None else method.default_steps
                if steps and self.p.distill_steps is not None:
                    steps = self.p.distill_steps
                ccfg = self._config(distill=DistillSpec(
                    method=row.method, steps=steps, params=dict(row.params), storage_dtype=self.p.storage_dtype,
                    experts=self._experts() if method.uses_experts else {}))
            elif label == LABELS["herding"]:
                spec = BufferSpec("distilled", mode, label)
                ccfg = self._config(distill=DistillSpec(method="herding", steps=0, params={},
                                                        storage_dtype=self.p.storage_dtype))
            else:
                kind = next(k for k, v in LABELS.items() if v == label)
                spec = BufferSpec("none" if kind == "naive" else kind, mode, label)
                ccfg = self._config()
            r = run_one(ccfg, self.bench, spec, run_seed, None)
            tgt = self.bench.name
            # bytes: what the buffer held at the end (uint8 images, int64 labels)
            rows += [{"target": tgt, "metric": f"{MODES[mode]} final acc", "acc": r["final_avg_acc"],
                      "bytes": r["sizes"][-1]["bytes"], "memory_bytes": r["memory_bytes"]},
                     {"target": tgt, "metric": f"{MODES[mode]} forgetting", "acc": r["avg_forgetting"],
                      "bytes": r["sizes"][-1]["bytes"], "memory_bytes": r["memory_bytes"]}]
        return rows


APPLICATION = ContinualApp
