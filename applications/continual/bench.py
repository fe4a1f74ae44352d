"""Continual replay as a leaderboard protocol: each row's method fills a class-incremental replay memory
(Avalanche), beside reservoir, class-balanced and herding buffers of real images, all of the same bytes.

How a method fills a buffer that grows by experience: the row's method distils each experience as it ends,
class-conditionally, into that experience's share of the memory (older shares shrink class-balanced to make
room; :class:`applications.continual.buffers.DistilledBuffer`), with the row's steps and params. The set the
leaderboard made from the whole source is not used here: it would hold every class before the stream shows
them. Methods that need expert trajectories (MKDT) or a trained classifier (SC-DD) cannot be run per
experience without training those per experience; their rows are left out, and the table says so.
A factorised method (Boost) gets a fixed share of the bytes per experience, counted as what its set stores
(bases, coefficients, networks in float32), and keeps every image that set expands into.

YAML (a leaderboard protocol)::

    - name: continual
      overrides:
        benchmark: ""                   # empty: the leaderboard's first target (cifar10 -> 5 experiences)
        n_experiences: null
        train_per_class: 500            # caps of the stream (CPU); null: the target's / the whole split
        modes: [experience, retrain]    # experience replay; a fresh model retrained on the memory (GDumb-like)
        references: [reservoir, class_balanced, herding]   # real-image buffers of the same bytes; add `naive`
                                        # (no replay, experience replay only) to show the table's headroom
        memory_per_class: 20            # bytes of this many uint8 real images per class
        epochs: 1

Metrics: ``<mode> final acc`` (average accuracy over all experiences at the end) and ``<mode> forgetting``
(average forgetting, lower is better).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from distill.config import load_config
from distill.errors import ConfigError
from distill.leaderboard.apps import Application
from distill.methods import get_method

from .benchmarks import split_benchmark
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
        skipped = sorted({r.method for r in self.ctx.cfg.all_rows() if self._unfit(r.method)})
        return (f"Continual replay: split {self.bench.name}, {self.bench.n_experiences} experiences, `{c.arch}`, "
                f"{c.epochs} epoch(s) per experience; memory = {c.memory_per_class} uint8 real images per class in "
                f"bytes for every buffer; each method distils each experience into its share as it ends"
                + (f" ({self.p.distill_steps} steps each)" if self.p.distill_steps is not None else "") + "; modes "
                f"{', '.join(self.p.modes)}; references {', '.join(r for r in self.p.references if r != 'naive')} "
                "(real images)"
                + ("; naive: no memory at all (experience replay only), the floor that replay lifts"
                   if "naive" in self.p.references else "")
                + (f"; not run per experience: {', '.join(skipped)} (need per-experience experts or a classifier)"
                   if skipped else "") + ".")

    @staticmethod
    def _unfit(method: str) -> bool:
        m = get_method(method)
        return bool(m.uses_experts or m.uses_classifier)

    def references(self) -> dict[str, bool]:
        return {LABELS[r]: r != "naive" for r in self.p.references}

    def cell(self, label, s, seed, set_seed, row) -> list[dict]:
        if row is not None and self._unfit(row.method):
            return []
        run_seed = seed       # the unit's seed (the leaderboard's unit_seed: evaluation seed + 1000 x set seed)
        rows = []
        for mode in self.p.modes:
            if label == NAIVE and mode != "experience":     # no memory to retrain from
                continue
            if row is not None:
                spec = BufferSpec("distilled", mode, label)
                steps = row.steps or 0
                if steps and self.p.distill_steps is not None:
                    steps = self.p.distill_steps
                ccfg = self._config(distill=DistillSpec(method=row.method, steps=steps, params=dict(row.params),
                                                        storage_dtype=self.p.storage_dtype))
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
