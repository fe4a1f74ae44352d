"""Data-free knowledge distillation through a distilled set (the KRR-ST paper's recipe).

A teacher classifier trained on a target task is distilled into a student using only the images
of a distilled set made from a *different* source dataset: soft cross-entropy (KL at temperature
T) between teacher and student on DSA-augmented images, Adam, cosine schedule. Baselines under the
same recipe: Gaussian-noise images and a random real subset of the source of equal size.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from distill import DistilledSet
from distill.config import to_dict
from distill.evaluate.config import PretrainConfig, TargetConfig
from distill.data import ImageSet, load_dataset
from distill.data.augment import DSA
from distill.classifier import Classifier
from distill.engine import accuracy, fit, full_precision, resolve_device, seed_everything
from distill.engine.optim import warmup_cosine
from distill.errors import ConfigError, DataError
from distill.evaluate import pretrain_on_set
from distill.evaluate.report import write_report
from distill.models import Net, create_model


SOURCES = ("set", "noise", "random")


@dataclass
class KDConfig:
    teacher: str = ""                     # classifier file (scripts/train_classifier.py)
    set: str = ""                         # the distilled set (from another source dataset)
    random_set: str | None = None         # a random real subset of the same source, equal size (method random)
    sources: list[str] = field(default_factory=lambda: list(SOURCES))
    students: list[str] = field(default_factory=lambda: ["convnet", "vgg11", "alexnet", "mobilenetv2", "resnet10"])
    target: TargetConfig = field(default_factory=TargetConfig)   # its test split measures the student
    iterations: int = 5000
    batch_size: int = 512
    lr: float = 1e-4
    temperature: float = 1.0
    dsa: str = "color_crop_cutout_flip_scale_rotate"             # "" for no augmentation
    pretrain_student: bool = False        # first pre-train the student on the set by MSE to its targets
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(epochs=100))
    train_mode_eval: bool = False         # evaluate with BN in train mode, as the reference code did
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    amp: str = "auto"                     # auto | bf16 | off
    output: str = "reports/kd"

    def validate(self):
        if not self.teacher or not self.set:
            raise ConfigError("kd needs teacher=<classifier file> and set=<distilled set file>")
        bad = [s for s in self.sources if s not in SOURCES]
        if bad:
            raise ConfigError(f"unknown KD source(s) {bad}", fix=f"use {SOURCES}")
        if "random" in self.sources and not self.random_set:
            raise ConfigError("source 'random' needs random_set=<a random-subset set file of the same size>",
                              fix="make one with `ssdd distill method=random budget=N ...`")


def noise_images(n: int, like, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise: N(0, 1) in the source's normalised space, mapped back to pixel space. ``like``: a
    DistilledSet or ImageSet (its channels, image_size, mean, std)."""
    z = torch.randn(n, like.channels, like.image_size, like.image_size, generator=generator)
    m = torch.tensor(like.mean).view(1, -1, 1, 1)
    s = torch.tensor(like.std).view(1, -1, 1, 1)
    return z * s + m


def evaluate(model: Net, test: ImageSet, train_mode: bool = False, batch: int = 1000, amp="auto") -> float:
    return accuracy(model, test, batch_size=batch, amp=amp, train_mode=train_mode)


def kd_train(student: Net, teacher: Net, images: torch.Tensor, cfg: KDConfig, device, desc: str = "kd") -> list[float]:
    """Soft cross-entropy KD on (augmented) ``images``; returns the loss every 100 iterations."""
    teacher.eval()
    student.train()
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.iterations))
    aug = DSA(images.shape[-1], cfg.dsa) if cfg.dsa else None
    t = cfg.temperature
    bs = min(cfg.batch_size, len(images))

    def step(i):
        idx = torch.randint(0, len(images), (bs,), device=device)
        x = images[idx]
        if aug is not None:
            x = aug(x)
        with torch.no_grad():
            p_t = F.softmax(teacher(x).float() / t, dim=1)
        logits = student(x)
        with full_precision(device):
            return F.kl_div(F.log_softmax(logits.float() / t, dim=1), p_t, reduction="batchmean") * t * t

    res = fit(step, cfg.iterations, optimizer=opt, scheduler=sched, device=device, amp=cfg.amp, desc=desc,
              what="KD loss", fix="lower lr", log_every=100)
    return [r["loss"] for r in res.history]


def run_kd(cfg: KDConfig) -> dict:
    t0 = time.time()
    device = resolve_device(cfg.device)
    teacher = Classifier.load(cfg.teacher, device=device)
    s = DistilledSet.load(cfg.set)
    if (s.image_size, s.channels) != (teacher.image_size, teacher.channels):
        raise DataError(f"the set is {s.channels}x{s.image_size}px but the teacher takes "
                        f"{teacher.channels}x{teacher.image_size}px")
    test = load_dataset(cfg.target.name, cfg.target.root, cfg.target.test_split, teacher.image_size, device=device)
    if test.num_classes != teacher.num_classes:
        raise DataError(f"target '{cfg.target.name}' has {test.num_classes} classes, the teacher {teacher.num_classes}")
    teacher_acc = evaluate(teacher.model, test, amp=cfg.amp)
    print(f"teacher {teacher.meta['arch']} on {cfg.target.name}/{cfg.target.test_split}: {teacher_acc:.2f}%")
    pools = {}
    for src in cfg.sources:
        if src == "set":
            pools[src] = s.materialize().images
        elif src == "noise":
            pools[src] = noise_images(len(s), s, torch.Generator().manual_seed(0))
        else:
            r = DistilledSet.load(cfg.random_set)
            if len(r) != len(s):
                print(f"note: random_set has {len(r)} images, the set {len(s)}")
            pools[src] = r.materialize().images
    rows, curves = [], {}
    mat = s.materialize()
    for student_name in cfg.students:
        for seed in cfg.seeds:
            seed_everything(seed)
            # the student normalises with the set's mean/std throughout (the toolkit's convention); the
            # teacher keeps its own
            init = create_model(student_name, out_dim=0, image_size=teacher.image_size, mean=s.mean,
                                std=s.std).to(device)
            if cfg.pretrain_student:
                pretrain_on_set(init, mat, cfg.pretrain, device, cfg.amp, desc=f"pre-train {student_name}")
            init.reset_head(teacher.num_classes)
            state = {k: v.clone() for k, v in init.state_dict().items()}
            start = evaluate(init, test, cfg.train_mode_eval, amp=cfg.amp)
            for src, images in pools.items():
                student = init
                student.load_state_dict(state)
                hist = kd_train(student, teacher.model, images.to(device), cfg, device, desc=f"kd {student_name} <- {src}")
                acc = evaluate(student, test, cfg.train_mode_eval, amp=cfg.amp)
                rows.append({"student": student_name, "source": src, "seed": seed, "acc": acc, "start_acc": start})
                curves[f"{student_name}/{src}/{seed}"] = hist
                print(f"  {student_name:<12} seed {seed} {src:<6} {start:6.2f} -> {acc:6.2f}  "
                      f"(KD loss {hist[0]:.3f} -> {hist[-1]:.3f})",
                      flush=True)
    notes = [f"Teacher `{teacher.meta['arch']}` ({teacher_acc:.2f}% on {cfg.target.name} test). Images: the distilled set "
             f"`{Path(cfg.set).name}` ({len(s)} images from {s.meta.get('source')}), Gaussian noise, a random real subset of "
             f"the source. KD: {cfg.iterations} iterations, batch {cfg.batch_size}, Adam lr {cfg.lr}, T = {cfg.temperature}, "
             f"DSA `{cfg.dsa or 'off'}`, {'student pre-trained on the set' if cfg.pretrain_student else 'student from scratch'}; "
             f"evaluated in {'train' if cfg.train_mode_eval else 'eval'} mode; seeds {list(cfg.seeds)}. "
             f"Test top-1 (%), mean ± sample std."]
    rep = write_report(cfg.output, rows, ("student", "source"), "student", ("source",), "Data-free knowledge distillation",
                       notes, {"teacher_acc": teacher_acc, "curves": curves, "config": to_dict(cfg),
                               "seconds": round(time.time() - t0, 1)})
    return {"rows": rows, "table": rep["table"], "teacher_acc": teacher_acc, "paths": rep["paths"]}
