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

    def validate(self):
        bad = sorted(set(self.teacher) - set(TEACHER_KEYS))
        if bad:
            raise ConfigError(f"unknown teacher key(s) {bad}", fix=f"use {list(TEACHER_KEYS)}")


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
        return (f"Data-free KD: students {', '.join(f'`{s}`' for s in self.p.students)} trained only on each set's "
                f"images, {self.p.iterations} iterations of KL to the teacher (T {self.p.temperature}, Adam lr "
                f"{self.p.lr}, batch {self.p.batch_size}, DSA `{self.p.dsa or 'off'}`); " + "; ".join(parts) + ".")

    def references(self) -> dict[str, bool]:
        return {NOISE: False} if self.p.noise else {}

    def key(self) -> dict:
        ids = {}
        for name in self.ctx.targets:
            path = self._teacher_file(name)
            ids[name] = read_header(path)[0].get("created") if path.exists() else None
        return {**super().key(), "teachers": ids}

    def _images(self, label, s, seed, set_seed) -> torch.Tensor:
        if s is not None:
            return s.materialize().images
        # Gaussian noise in the source's statistics, a fresh draw per unit (``seed`` is the unit's own seed)
        return noise_images(self.ctx.budget, self.ctx.src, torch.Generator().manual_seed(seed))

    def cell(self, label, s, seed, set_seed, row) -> list[dict]:
        images = self._images(label, s, seed, set_seed).to(self.ctx.device)
        kcfg = KDConfig(iterations=self.p.iterations, batch_size=self.p.batch_size, lr=self.p.lr,
                        temperature=self.p.temperature, dsa=self.p.dsa, amp=self.ctx.cfg.amp)
        rows = []
        for name, (_, test, _) in self.ctx.targets.items():
            teacher = self.teachers[name]
            for student_name in self.p.students:
                seed_everything(seed)
                student = create_model(student_name, out_dim=teacher.num_classes, image_size=teacher.image_size,
                                       in_chans=teacher.channels, mean=self.ctx.src.mean,
                                       std=self.ctx.src.std).to(self.ctx.device)
                hist = kd_train(student, teacher.model, images, kcfg, self.ctx.device, desc=f"kd {student_name} <- {label}")
                acc = accuracy(student, test, amp=self.ctx.cfg.amp)
                rows.append({"target": name, "metric": f"kd {student_name}", "acc": acc, "student": student_name,
                             "kd_loss": [hist[0], hist[-1]] if hist else None})
        return rows


__all__ = ["KDApp", "KDBenchConfig"]
APPLICATION = KDApp
