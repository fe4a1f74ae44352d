"""Teacher training: Barlow Twins or SimCLR on a GPU-resident dataset, two views augmented in batches."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import TeacherConfig, to_dict
from ..data import load_dataset
from ..data.augment import SSLViews, ViewConfig
from ..engine import (MetricLogger, autocast, channels_last, get_rng_state, load_checkpoint, progress,
                      resolve_device, save_checkpoint, seed_everything, set_rng_state)
from ..engine.optim import build_optimizer, param_groups, warmup_cosine
from ..errors import NumericalError, UserError
from ..evaluate.knn import knn_accuracy
from ..models import create_model
from .losses import barlow_twins_loss, nt_xent_loss, projector
from .teacher import Teacher


@dataclass
class TeacherResult:
    teacher: Teacher
    path: Path
    knn_top1: float | None
    seconds: float
    history: list[dict]


def _views(cfg: TeacherConfig, size: int) -> SSLViews:
    v = cfg.views
    mk = [ViewConfig(crop_scale=(v.crop_min_scale, 1.0), jitter=tuple(v.jitter), p_jitter=v.p_jitter,
                     p_gray=v.p_gray, p_blur=v.p_blur[i], p_solarize=v.p_solarize[i]) for i in (0, 1)]
    return SSLViews(size, mk[0], mk[1])


def checkpoint_path(output: str | Path) -> Path:
    out = Path(output)
    return out.with_name(out.stem + ".ckpt.safetensors")


def train_teacher(cfg: TeacherConfig, resume: bool = False, stop_after: int | None = None) -> TeacherResult | None:
    """Train a self-supervised teacher as ``cfg`` says; write it to ``cfg.output``; return it.

    resume: continue from the checkpoint beside the output. stop_after: stop after this many
    epochs, leaving a checkpoint and returning None (to split a long run).
    """
    t0 = time.time()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    d = cfg.data
    train = load_dataset(d.name, d.root, d.split, d.image_size, download=d.download, cache=d.cache, device=device)
    if len(train) < cfg.batch_size:
        raise UserError(f"{d.name}/{d.split} has {len(train)} images, fewer than batch_size={cfg.batch_size}",
                        fix="lower batch_size")
    backbone = create_model(cfg.backbone, out_dim=0, image_size=train.image_size, in_chans=train.channels,
                            mean=train.mean, std=train.std)
    layers = cfg.projector_layers or (3 if cfg.ssl == "barlow_twins" else 2)
    proj = projector(backbone.feature_dim, cfg.projector_hidden, cfg.projector_dim, layers)
    backbone, proj = channels_last(backbone, device), proj.to(device)
    views = _views(cfg, train.image_size)
    steps_per_epoch = len(train) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    lr = cfg.lr * cfg.batch_size / 256
    opt = build_optimizer(cfg.optimizer, param_groups([backbone, proj], cfg.weight_decay), lr, cfg.momentum,
                          cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, cfg.warmup_epochs * steps_per_epoch))

    def loss_fn(z1, z2):
        if cfg.ssl == "barlow_twins":
            return cfg.loss_scale * barlow_twins_loss(z1, z2, cfg.lambd)
        return cfg.loss_scale * nt_xent_loss(z1, z2, cfg.temperature)

    out = Path(cfg.output)
    ckpt = checkpoint_path(out)
    start_epoch = 0
    log = MetricLogger(out.with_suffix(".metrics.jsonl"), out.parent / "tb" if cfg.tensorboard else None,
                       append=resume)
    if resume:
        if not ckpt.exists():
            raise UserError(f"--resume: no checkpoint at {ckpt}", fix="run without --resume to start fresh")
        state = load_checkpoint(ckpt, device="cpu")
        backbone.load_state_dict(state["backbone"])
        proj.load_state_dict(state["projector"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        set_rng_state(state["rng"])
        start_epoch = state["epoch"]
        print(f"resumed from {ckpt} at epoch {start_epoch}")

    bar = progress(total=total, initial=start_epoch * steps_per_epoch, desc=f"{cfg.ssl} {cfg.backbone}")
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)

    def write_checkpoint(epoch):
        save_checkpoint(ckpt, {"backbone": backbone.state_dict(), "projector": proj.state_dict(),
                               "opt": opt.state_dict(), "sched": sched.state_dict(), "rng": get_rng_state(),
                               "epoch": epoch}, meta={"config": to_dict(cfg)})

    for epoch in range(start_epoch, end_epoch):
        backbone.train()
        proj.train()
        running = torch.zeros((), device=device)
        for x, _ in train.batches(cfg.batch_size, shuffle=True, drop_last=True):
            v1, v2 = views(x)
            with autocast(device, cfg.amp):
                z1 = proj(backbone.embed(v1))
                z2 = proj(backbone.embed(v2))
            loss = loss_fn(z1.float(), z2.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.detach()
            bar.update(1)
        mean_loss = (running / steps_per_epoch).item()
        if not torch.isfinite(torch.tensor(mean_loss)):
            raise NumericalError(f"the {cfg.ssl} loss became {mean_loss} at epoch {epoch + 1}",
                                 fix="lower lr or use a different optimizer")
        bar.set_postfix(loss=f"{mean_loss:.3f}", epoch=epoch + 1)
        log.log(epoch + 1, loss=mean_loss, lr=sched.get_last_lr()[0])
        last = epoch + 1 == cfg.epochs
        if cfg.checkpoint_every and ((epoch + 1) % cfg.checkpoint_every == 0) and not last:
            write_checkpoint(epoch + 1)
    bar.close()
    if end_epoch < cfg.epochs:
        write_checkpoint(end_epoch)
        log.close()
        return None

    backbone = backbone.to(memory_format=torch.contiguous_format)
    meta = {"backbone": cfg.backbone, "dim": backbone.feature_dim, "image_size": train.image_size, "in_chans": train.channels,
            "mean": list(train.mean), "std": list(train.std), "source": d.name, "split": d.split,
            "ssl": cfg.ssl, "epochs": cfg.epochs, "seed": cfg.seed, "config": to_dict(cfg)}
    teacher = Teacher(backbone, meta)
    knn = None
    if cfg.test_split and train.labelled:
        test = load_dataset(d.name, d.root, cfg.test_split, d.image_size, cache=d.cache, device=device)
        knn = knn_accuracy(teacher.represent(train, desc="k-NN train"), train.labels,
                           teacher.represent(test, desc="k-NN test"), test.labels, k=cfg.knn_k)
        teacher.meta["knn_top1"] = round(knn, 2)
        teacher.meta["knn_k"] = cfg.knn_k
        log.log(cfg.epochs, knn_top1=knn)
    teacher.meta["train_seconds"] = round(time.time() - t0, 1)
    path = teacher.save(out)
    log.close()
    if ckpt.exists():
        ckpt.unlink()
    summary = {k: v for k, v in teacher.meta.items() if k != "config"}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return TeacherResult(teacher, path, knn, time.time() - t0, log.history)
