"""Data-free knowledge distillation as a leaderboard protocol: a supervised teacher per target, students
trained only on each set's images (KL to the teacher's soft labels, the KRR-ST paper's recipe).

YAML (a leaderboard protocol)::

    - name: kd
      overrides:
        students: [convnet-32-64-128-bn, resnet18]
        teacher: {arch: convnet-32-64-128-bn, iterations: 2000}   # trained once per target on its training
                                                                  # images, cached; or file: <classifier>
        iterations: 1000
        batch_size: 256
        lr: 1.0e-3
        # or chosen per student on held-out *training* images, never the test split: each count of the grid
        # trains that student on a random draw of `budget` source images (seed 0); the chosen count is the
        # smallest whose accuracy on `schedule_per_class` images per class of the target's training split is
        # within `schedule_tolerance` points of the grid's best (cached; `iterations` is then unused)
        schedule_grid: [100, 200, 400, 800, 1600]
        schedule_lrs: [1.0e-3, 3.0e-3]      # optional: the grid is then every (lr, count) pair, and the choice is the
                                            # smallest count within the tolerance of the best pair (its lr with it)
        schedule_per_class: 20
        schedule_tolerance: 0.5

References: ``noise`` (Gaussian noise in the source's statistics, as many images as the budget) is not a real
image set; the rows ``random`` and ``random_labelled`` are the real-image baselines (random real images of the
same count). A cell is one set x evaluation seed, every target and student; the metric is ``kd <student>``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill.classifier import Classifier
from distill.config import to_dict
from distill.engine import accuracy, seed_everything
from distill.engine.safefile import read_header
from distill.errors import ConfigError
from distill.evaluate import train_classifier
from distill.leaderboard.apps import Application
from distill.models import create_model

from .run import KDConfig, kd_train, noise_images

NOISE = "noise"
TEACHER_KEYS = ("arch", "iterations", "lr", "batch_size", "file")


@dataclass
class KDBenchConfig:
    students: list[str] = field(default_factory=lambda: ["convnet-32-64-128-bn", "resnet18"])
    # the target's supervised teacher: made here (arch, iterations, lr, batch_size) or a classifier file
    teacher: dict[str, Any] = field(default_factory=lambda: {"arch": "convnet-32-64-128-bn", "iterations": 2000})
    iterations: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    temperature: float = 1.0
    dsa: str = "color_crop_cutout_flip_scale_rotate"   # "" for no augmentation
    noise: bool = True                   # the Gaussian-noise reference row
    # the iterations chosen per student on held-out training images (see the module docstring); empty: `iterations`
    schedule_grid: list[int] = field(default_factory=list)
    schedule_lrs: list[float] = field(default_factory=list)   # empty: `lr` only
    schedule_per_class: int = 20
    schedule_tolerance: float = 0.5

    def validate(self):
        bad = sorted(set(self.teacher) - set(TEACHER_KEYS))
        if bad:
            raise ConfigError(f"unknown teacher key(s) {bad}", fix=f"use {list(TEACHER_KEYS)}")
        if any(int(n) != n or n < 1 for n in self.schedule_grid) or len(set(self.schedule_grid)) != len(self.schedule_grid):
            raise ConfigError(f"schedule_grid must be distinct positive iteration counts, got {self.schedule_grid}",
                              fix="e.g. schedule_grid: [100, 200, 400, 800]")
        if self.schedule_per_class < 1 or self.schedule_tolerance < 0:
            raise ConfigError("schedule_per_class must be >= 1 and schedule_tolerance >= 0")
        if any(not lr > 0 for lr in self.schedule_lrs) or len(set(self.schedule_lrs)) != len(self.schedule_lrs):
            raise ConfigError(f"schedule_lrs must be distinct positive learning rates, got {self.schedule_lrs}",
                              fix="e.g. schedule_lrs: [1.0e-3, 3.0e-3]")
        if self.schedule_lrs and not self.schedule_grid:
            raise ConfigError("schedule_lrs needs a schedule_grid (the iteration counts to try at each lr)",
                              fix="add schedule_grid: [...] or remove schedule_lrs")


def choose_schedule(accs: dict[tuple[float, int], float], tolerance: float) -> tuple[float, int]:
    """Over (lr, iterations) pairs (one lr without ``schedule_lrs``): the cheapest pair (fewest iterations; the more
    accurate one on a tie) whose held-out accuracy is within ``tolerance`` points of the best pair's (a student
    trained longer gains less than that: converged, at this scale)."""
    best = max(accs.values())
    return min((pair for pair, a in accs.items() if a >= best - tolerance), key=lambda pr: (pr[1], -accs[pr]))


class KDApp(Application):
    name = "kd"
    Config = KDBenchConfig

    def _teacher_file(self, target: str) -> Path:
        if self.p.teacher.get("file"):
            return Path(self.p.teacher["file"])
        t = self.p.teacher
        # keyed by its settings and by the target's config (its training images)
        tcfg = to_dict(self.ctx.targets[target][2])
        digest = hashlib.sha256(json.dumps([t, tcfg], sort_keys=True, default=str).encode()).hexdigest()[:10]
        return self.ctx.folder / f"teacher-{target}-{t.get('arch', 'convnet-32-64-128-bn')}-{digest}.safetensors"

    def prepare(self) -> str:
        self.teachers, parts = {}, []
        for name, (train, test, _) in self.ctx.targets.items():
            path = self._teacher_file(name)
            if not path.exists():
                t = self.p.teacher
                self.ctx.log(f"  [kd] train the {name} teacher {t.get('arch')} ({t.get('iterations', 2000)} iterations) "
                             f"-> {path}")
                clf = train_classifier(t.get("arch", "convnet-32-64-128-bn"), train, test,
                                       iterations=int(t.get("iterations", 2000)), lr=float(t.get("lr", 0.05)),
                                       batch_size=int(t.get("batch_size", 128)), amp=self.ctx.cfg.amp)
                clf.save(path)
            clf = Classifier.load(path, device=self.ctx.device)
            self.teachers[name] = clf
            acc = accuracy(clf.model, test, amp=self.ctx.cfg.amp)
            parts.append(f"{name} teacher `{clf.meta['arch']}` {acc:.2f} % on its {len(test)} test images")
        self.iterations = {st: self.p.iterations for st in self.p.students}
        self.lrs = {st: self.p.lr for st in self.p.students}
        sched = ""
        if self.p.schedule_grid:
            self.lrs, self.iterations, said = self._schedule()
            sched = "; iterations chosen per student on held-out training images: " + said
        its = sorted(set(self.iterations.values()))
        lrs = sorted(set(self.lrs.values()))
        return (f"Data-free KD: students {', '.join(f'`{s}`' for s in self.p.students)} trained only on each set's "
                f"images, {its[0] if len(its) == 1 else ' / '.join(map(str, its))} iterations of KL to the teacher "
                f"(T {self.p.temperature}, Adam lr {' / '.join(f'{lr:g}' for lr in lrs)} with warm-up and cosine decay, "
                f"batch {self.p.batch_size}, DSA `{self.p.dsa or 'off'}`)"
                f"{sched}; " + "; ".join(parts) + ".")

    def _schedule(self) -> tuple[dict[str, float], dict[str, int], str]:
        """Per student, the (lr, iterations) :func:`choose_schedule` picks from ``schedule_lrs`` x ``schedule_grid``
        (``lr`` alone without ``schedule_lrs``) by the accuracy on held-out training images of the first target
        (cached in the application's folder)."""
        from distill.data import label_subset
        name, (train, _, _) = next(iter(self.ctx.targets.items()))
        lrs = sorted(self.p.schedule_lrs) or [self.p.lr]
        key = {"grid": sorted(self.p.schedule_grid), "per_class": self.p.schedule_per_class,
               "tolerance": self.p.schedule_tolerance, "students": self.p.students, "budget": self.ctx.budget,
               "teacher": read_header(self._teacher_file(name))[0].get("created"), "source": len(self.ctx.src),
               **{k: getattr(self.p, k) for k in ("batch_size", "lr", "temperature", "dsa")},
               **({"lrs": lrs} if self.p.schedule_lrs else {})}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
        file = self.ctx.folder / f"kd-schedule-{name}-{digest}.json"
        if file.exists():     # {student: {lr: {iterations: accuracy}}}
            accs = {st: {float(lr): {int(n): a for n, a in by.items()} for lr, by in v.items()}
                    for st, v in json.loads(file.read_text())["accs"].items()}
        else:
            held = train.subset(label_subset(train.labels, per_class=self.p.schedule_per_class, seed=1))
            g = torch.Generator().manual_seed(0)
            pick = torch.randperm(len(self.ctx.src), generator=g)[: self.ctx.budget]
            images = self.ctx.src.subset(pick.tolist()).float().to(self.ctx.device)
            teacher = self.teachers[name]
            accs = {}
            for st in self.p.students:
                accs[st] = {}
                for lr in lrs:
                    accs[st][lr] = {}
                    for n in sorted(self.p.schedule_grid):
                        student = self._student(st, teacher, 0)
                        kd_train(student, teacher.model, images, self._kd(n, lr), self.ctx.device,
                                 desc=f"kd schedule {st} {n}")
                        accs[st][lr][n] = accuracy(student, held, amp=self.ctx.cfg.amp)
                        self.ctx.log(f"  [kd] schedule: {st}, lr {lr:g}, {n} iterations: {accs[st][lr][n]:.2f} % on "
                                     f"{len(held)} held-out training images")
            from distill.engine.files import write_json
            write_json(file, {"accs": {st: {str(lr): by for lr, by in v.items()} for st, v in accs.items()},
                              "key": key})
        chosen = {st: choose_schedule({(lr, n): a for lr, by in v.items() for n, a in by.items()},
                                      self.p.schedule_tolerance) for st, v in accs.items()}
        top = max(self.p.schedule_grid)
        several = len(lrs) > 1

        def one(st):
            lr, n = chosen[st]
            grid = "; ".join((f"lr {lr_:g}: " if several else "")
                             + ", ".join(f"{k}: {a:.1f} %" for k, a in sorted(by.items()))
                             for lr_, by in sorted(accs[st].items()))
            edge = (" **at the grid's largest count: still improving, widen the grid**"
                    if n == top and len(self.p.schedule_grid) > 1 else "")
            return f"`{st}` {n}" + (f" at lr {lr:g}" if several else "") + f" ({grid}){edge}"
        said = "; ".join(one(st) for st in self.p.students)
        return ({st: c[0] for st, c in chosen.items()}, {st: c[1] for st, c in chosen.items()},
                said + f", the {'cheapest' if several else 'smallest'} within {self.p.schedule_tolerance:g} points "
                       f"of the grid's best")

    def _kd(self, iterations: int, lr: float) -> KDConfig:
        return KDConfig(iterations=iterations, batch_size=self.p.batch_size, lr=lr,
                        temperature=self.p.temperature, dsa=self.p.dsa, amp=self.ctx.cfg.amp)

    def _student(self, student_name: str, teacher, seed: int):
        seed_everything(seed)
        return create_model(student_name, out_dim=teacher.num_classes, image_size=teacher.image_size,
                            in_chans=teacher.channels, mean=self.ctx.src.mean, std=self.ctx.src.std).to(self.ctx.device)

    def references(self) -> dict[str, bool]:
        return {NOISE: False} if self.p.noise else {}

    def key(self) -> dict:
        ids = {}
        for name in self.ctx.targets:
            path = self._teacher_file(name)
            ids[name] = read_header(path)[0].get("created") if path.exists() else None
        chosen = {"iterations_chosen": self.iterations} if self.p.schedule_grid else {}
        if self.p.schedule_lrs:
            chosen["lr_chosen"] = self.lrs
        return {**super().key(), "teachers": ids, **chosen}

    def _images(self, label, s, seed, set_seed) -> torch.Tensor:
        if s is not None:
            return s.materialize().images
        # Gaussian noise in the source's statistics, a fresh draw per unit (``seed`` is the unit's own seed)
        return noise_images(self.ctx.budget, self.ctx.src, torch.Generator().manual_seed(seed))

    def cell(self, label, s, seed, set_seed, row) -> list[dict]:
        images = self._images(label, s, seed, set_seed).to(self.ctx.device)
        rows = []
        for name, (_, test, _) in self.ctx.targets.items():
            teacher = self.teachers[name]
            for student_name in self.p.students:
                student = self._student(student_name, teacher, seed)
                cfg = self._kd(self.iterations[student_name], self.lrs[student_name])
                hist = kd_train(student, teacher.model, images, cfg,
                                self.ctx.device, desc=f"kd {student_name} <- {label}")
                acc = accuracy(student, test, amp=self.ctx.cfg.amp)
                rows.append({"target": name, "metric": f"kd {student_name}", "acc": acc, "student": student_name,
                             "kd_loss": [hist[0], hist[-1]] if hist else None})
        return rows


__all__ = ["KDApp", "KDBenchConfig", "choose_schedule"]
APPLICATION = KDApp
