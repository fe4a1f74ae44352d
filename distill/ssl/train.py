"""Teacher training: Barlow Twins or SimCLR on a device-resident dataset, two views augmented in
batches. A resumable stage (:mod:`distill.engine.stage`): one optimizer step per stage step."""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import resolved, to_dict
from ..data import load_dataset
from ..data.augment import SSLViews, ViewConfig
from ..data.config import DataConfig
from ..data.subsets import balanced_indices
from ..engine import autocast, channels_last, dist, resolve_device, seed_everything
from ..engine.device import Compiled, describe_precision, full_precision
from ..engine.loop import epoch_batches, update
from ..engine.optim import build_optimizer, param_groups, warmup_cosine
from ..engine.stage import Stage, run_stage
from ..errors import ConfigError, UserError
from ..evaluate.knn import knn_accuracy
from ..evaluate.train import extract_features
from ..models import check_model, create_model
from .losses import barlow_twins_loss, nt_xent_loss, projector
from .teacher import Teacher


@dataclasses.dataclass
class ViewsConfig:
    """The two-view SSL augmentation (per-view blur / solarisation probabilities)."""

    crop_min_scale: float = 0.08
    jitter: list[float] = dataclasses.field(default_factory=lambda: [0.4, 0.4, 0.2, 0.1])
    p_jitter: float = 0.8
    p_gray: float = 0.2
    p_blur: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0])
    p_solarize: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.2])


@dataclasses.dataclass
class TeacherConfig:
    """``ssdd teacher``: self-supervised pre-training of a backbone (Barlow Twins or SimCLR).

    YAML (configs/teacher/*.yaml)::

        data: {name: cifar100, root: /data}
        backbone: resnet18
        ssl: barlow_twins          # or simclr
        epochs: 800
        output: runs/cifar100/teacher.safetensors
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    test_split: str | None = "test"      # k-NN check at the end; null to skip
    backbone: str = "resnet18"
    ssl: str = "barlow_twins"             # barlow_twins | simclr
    projector_hidden: int = 2048
    projector_dim: int = 2048
    projector_layers: int = 0             # 0: 3 for Barlow Twins, 2 for SimCLR
    lambd: float = 5e-3                   # Barlow Twins off-diagonal weight
    temperature: float = 0.5              # SimCLR
    loss_scale: float = 1.0
    views: ViewsConfig = dataclasses.field(default_factory=ViewsConfig)
    epochs: int = 200
    batch_size: int = 256
    optimizer: str = "lars"
    lr: float = 0.3                       # at batch 256; scaled linearly with the batch size
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: int = 10
    knn_k: int = 200
    holdout: int = 0                      # training images held out of SSL training (class-balanced, fixed draw):
                                          # the k-NN validation queries, so recipes are chosen without the test split
    knn_every: int = 0                    # epochs between k-NN checks during training (0: only at the end); the
                                          # curve goes into the teacher's header (``knn_curve``)
    compile: bool = False                 # torch.compile the backbone + projector (falls back to eager on failure)
    sync_bn: bool = True                  # under torchrun: BatchNorm statistics over the global batch
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"                     # auto | bf16 | off (bf16 on CUDA and on CPUs with bf16 units)
    output: str = "runs/${.data.name}/teacher_${.backbone}_${.ssl}.safetensors"
    checkpoint_every: int = 10            # epochs; 0 = only at the end
    tensorboard: bool = False

    def validate(self):
        from ..engine.device import amp_mode
        if self.ssl not in ("barlow_twins", "simclr"):
            raise ConfigError(f"unknown ssl method '{self.ssl}'", fix="use barlow_twins or simclr")
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("epochs must be >= 1 and batch_size >= 2")
        if not self.output.endswith(".safetensors"):
            raise ConfigError(f"output '{self.output}' must end in .safetensors")
        amp_mode(self.amp)
        check_model(self.backbone, "backbone")


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


class TwoViews(torch.nn.Module):
    """Backbone + projector applied to both views in one forward (one DDP forward per step)."""

    def __init__(self, backbone, proj):
        super().__init__()
        self.backbone, self.proj = backbone, proj

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj(self.backbone.embed(v1)), self.proj(self.backbone.embed(v2))


class TeacherStage(Stage):
    """One SSL optimizer step per stage step; an epoch is ``len(train) // batch_size`` steps.

    Under ``torchrun``: every rank draws and augments the same global batch, keeps its shard, and the
    model is DDP (optionally with SyncBatchNorm); the loss is the global batch's (``gather_distributed``),
    so N processes take the step one process takes on the whole batch."""

    name = "teacher"
    #: keys that do not change what is trained (the k-NN check at the end; sync_bn, which only acts under torchrun)
    mutable = ("test_split", "knn_k", "sync_bn", "knn_every", "compile")

    def __init__(self, cfg: TeacherConfig, train, device: torch.device, val=None, test=None):
        self.cfg, self.train, self.device = cfg, train, device
        self.val, self.test = val, test       # k-NN queries: held-out training images, the test split
        self.knn_curve: list[dict] = []
        self.t0 = time.time()
        self.backbone = create_model(cfg.backbone, out_dim=0, image_size=train.image_size, in_chans=train.channels,
                                     mean=train.mean, std=train.std)
        layers = cfg.projector_layers or (3 if cfg.ssl == "barlow_twins" else 2)
        self.proj = projector(self.backbone.feature_dim, cfg.projector_hidden, cfg.projector_dim, layers)
        self.backbone = channels_last(self.backbone, device, cfg.amp)
        self.proj = self.proj.to(device)
        if cfg.sync_bn:
            self.backbone = dist.convert_sync_batchnorm(self.backbone, device)
            self.proj = dist.convert_sync_batchnorm(self.proj, device)
        self.net = dist.wrap_ddp(TwoViews(self.backbone, self.proj), device)
        self.forward = Compiled(self.net, cfg.compile, f"{cfg.backbone} + projector")
        self.views = _views(cfg, train.image_size)
        self.batches = epoch_batches(len(train), cfg.batch_size, device, drop_last=True, cpu_perm=True)
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.steps = self.steps_per_epoch * cfg.epochs
        lr = cfg.lr * cfg.batch_size / 256
        self.opt = build_optimizer(cfg.optimizer, param_groups([self.backbone, self.proj], cfg.weight_decay), lr,
                                   cfg.momentum, cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, warmup_cosine(self.steps, cfg.warmup_epochs * self.steps_per_epoch))

    def loss_fn(self, z1, z2):
        cfg = self.cfg
        if cfg.ssl == "barlow_twins":
            return cfg.loss_scale * barlow_twins_loss(z1, z2, cfg.lambd, gather_distributed=True)
        return cfg.loss_scale * nt_xent_loss(z1, z2, cfg.temperature, gather_distributed=True)

    def step(self, i: int):
        self.net.train()
        x = self.train.float(self.batches(i))
        v1, v2 = self.views(x)                 # the global batch, the same on every rank
        part = dist.shard(len(x))
        with autocast(self.device, self.cfg.amp):
            z1, z2 = self.forward(v1[part], v2[part])
            with full_precision(self.device):
                loss = self.loss_fn(z1.float(), z2.float())
        update(loss, self.opt, self.sched)
        done = i + 1
        if self.cfg.knn_every and done % (self.cfg.knn_every * self.steps_per_epoch) == 0 and done < self.steps:
            self.knn_curve.append(self.knn_point(done // self.steps_per_epoch))
        return {"loss": dist.all_reduce_mean(loss.detach())}

    def knn_point(self, epoch: int) -> dict:
        """k-NN top-1 of the current backbone: held-out training images (``val``) and, where loaded, the test
        split (``test``; reported, never used to choose anything), both against the training images."""
        was = self.backbone.training
        with torch.no_grad():
            bank = extract_features(self.backbone, self.train, amp=self.cfg.amp, desc="k-NN bank")
        row = {"epoch": epoch}
        for key, ds in (("val", self.val), ("test", self.test)):
            if ds is not None:
                with torch.no_grad():
                    queries = extract_features(self.backbone, ds, amp=self.cfg.amp, desc=f"k-NN {key}")
                row[key] = round(knn_accuracy(bank, self.train.labels, queries, ds.labels,
                                              k=self.cfg.knn_k), 2)
        self.backbone.train(was)
        if dist.is_main():
            print("  k-NN after epoch " + str(epoch) + ": " +
                  ", ".join(f"{k} {v:.2f} %" for k, v in row.items() if k != "epoch"), flush=True)
        return row

    def state_dict(self) -> dict:
        return {"backbone": self.backbone.state_dict(), "projector": self.proj.state_dict(),
                "opt": self.opt.state_dict(), "sched": self.sched.state_dict(), "batches": self.batches.state_dict(),
                "knn_curve": [[r["epoch"], r.get("val", -1.0), r.get("test", -1.0)] for r in self.knn_curve]}

    def load_state_dict(self, state: dict) -> None:
        self.backbone.load_state_dict(state["backbone"])
        self.proj.load_state_dict(state["projector"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.batches.load_state_dict(state.get("batches", {}))
        self.knn_curve = [{"epoch": int(e), **({"val": v} if v >= 0 else {}), **({"test": t} if t >= 0 else {})}
                          for e, v, t in state.get("knn_curve", [])]

    def upgrade_checkpoint(self, state: dict, path) -> dict:
        if "epoch" in state and "backbone" in state:   # release 0.1: a checkpoint at an epoch boundary
            stage = {k: state[k] for k in ("backbone", "projector", "opt", "sched")}
            return {"stage": stage, "rng": state["rng"], "step": int(state["epoch"]) * self.steps_per_epoch}
        return super().upgrade_checkpoint(state, path)

    def finish(self) -> Teacher:
        cfg, train, d = self.cfg, self.train, self.cfg.data
        backbone = self.backbone.to(memory_format=torch.contiguous_format)
        meta = {"arch": cfg.backbone, "dim": backbone.feature_dim, "image_size": train.image_size,
                "channels": train.channels, "mean": list(train.mean), "std": list(train.std), "source": d.name,
                "split": d.split, "ssl": cfg.ssl, "epochs": cfg.epochs, "seed": cfg.seed, "config": to_dict(cfg)}
        if cfg.holdout:
            meta["holdout"] = cfg.holdout
        teacher = Teacher(backbone, meta)
        if train.labelled and (self.val is not None or self.test is not None):
            last = self.knn_point(cfg.epochs)
            if "test" in last:
                teacher.meta["knn_top1"] = last["test"]
            if "val" in last:
                teacher.meta["val_knn_top1"] = last["val"]
            teacher.meta["knn_k"] = cfg.knn_k
            self.knn_curve.append(last)
        if self.knn_curve:
            teacher.meta["knn_curve"] = self.knn_curve
        teacher.meta["train_seconds"] = round(time.time() - self.t0, 1)
        return teacher


def holdout_split(train, n: int, seed: int = 0):
    """(the rest, ``n`` held-out images): a class-balanced draw with a fixed seed, so every recipe compared
    on the same data sees the same validation images whatever its own ``seed``."""
    if not train.labelled:
        raise ConfigError("holdout needs a labelled training split (k-NN validation)", fix="holdout=0")
    if not 0 < n < len(train):
        raise ConfigError(f"holdout={n} must be between 1 and {len(train) - 1}", fix="holdout=5000 on CIFAR")
    idx = balanced_indices(train.labels, n, seed=seed).to(train.images.device)
    keep = torch.ones(len(train), dtype=torch.bool, device=train.images.device)
    keep[idx] = False
    return train.subset(torch.nonzero(keep).flatten()), train.subset(torch.sort(idx).values)


def train_teacher(cfg: TeacherConfig, resume: bool = False, stop_after: int | None = None,
                  overwrite: bool = False, time_limit: float | None = None) -> TeacherResult | None:
    """Train a self-supervised teacher as ``cfg`` says; write it to ``cfg.output``; return it.

    resume: continue from the checkpoint beside the output. stop_after: stop after this many
    epochs, leaving a checkpoint and returning None (to split a long run); time_limit: the same after the
    step that crosses that many seconds.
    """
    t0 = time.time()
    cfg = resolved(cfg)
    dist.init_distributed(cfg.device)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    d = cfg.data
    train = load_dataset(d.name, d.root, d.split, d.image_size, download=d.download, cache=d.cache, device=device)
    val = test = None
    if cfg.holdout:
        train, val = holdout_split(train, cfg.holdout)
    if cfg.test_split and train.labelled:
        test = load_dataset(d.name, d.root, cfg.test_split, d.image_size, cache=d.cache, device=device)
    if len(train) < cfg.batch_size:
        raise UserError(f"{d.name}/{d.split} has {len(train)} images, fewer than batch_size={cfg.batch_size}",
                        fix="lower batch_size")
    if cfg.batch_size < dist.world_size():
        raise ConfigError(f"batch_size {cfg.batch_size} cannot be split over {dist.world_size()} processes",
                          fix=f"batch_size >= {dist.world_size()} (the global batch is split)")
    stage = TeacherStage(cfg, train, device, val=val, test=test)
    spe = stage.steps_per_epoch
    if dist.is_main():
        procs = f", {dist.world_size()} processes (batch {cfg.batch_size} split)" if dist.is_distributed() else ""
        print(f"teacher: {cfg.ssl} {cfg.backbone} on {d.name}/{d.split} ({len(train)} images), {cfg.epochs} epochs x "
              f"{spe} steps, device {device}{procs}, {describe_precision(device, cfg.amp)}", flush=True)
    res = run_stage(stage, stage.steps, output=cfg.output, config=to_dict(cfg), resume=resume,
                    stop_after=None if stop_after is None else stop_after * spe,
                    checkpoint_every=cfg.checkpoint_every * spe, log_every=spe, tensorboard=cfg.tensorboard,
                    mutable=TeacherStage.mutable, desc=f"{cfg.ssl} {cfg.backbone}", what=f"{cfg.ssl} loss",
                    fix="lower lr or use a different optimizer", device=device, overwrite=overwrite, time_limit=time_limit,
                    cpu_hint="For a CPU run use configs/teacher/<dataset>_cpu.yaml (SimCLR on a small ConvNet) or "
                             "lower epochs= / backbone=.")
    if not res.finished:
        return None
    teacher = res.record
    out = Path(cfg.output)
    summary = {k: v for k, v in teacher.meta.items() if k != "config"}
    if dist.is_main():
        out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return TeacherResult(teacher, res.path, teacher.meta.get("knn_top1"), time.time() - t0, res.history)
