"""SC-DD's squeeze: a frozen self-supervised backbone + a linear classifier trained on the source labels.

The teacher's backbone is frozen, BatchNorm running statistics included: its features are computed
once in eval mode (:meth:`Teacher.represent_cached`, unaugmented images), and only a linear head is
trained on them by SGD with momentum and a cosine schedule (the reference: 200 epochs, lr 0.06 on
CIFAR-100 / Tiny, 0.03 on ImageNet). The output is a :class:`~distill.classifier.Classifier` record
(backbone weights + head) whose header names the teacher and holds the head's top-1 on the source's
test split, which is only read at the end, never to select anything.

    ssdd squeeze -c configs/scdd/squeeze_cifar100.yaml data.root=/data

The stage is resumable like every other (``--resume``, ``stop_after``); SC-DD's recover
(``method: scdd``) reads the file through ``params.classifier``.
"""
from __future__ import annotations

import dataclasses
import time

import torch
import torch.nn.functional as F

from ...classifier import Classifier
from ...config import resolved, to_dict
from ...data import ImageSet, load_dataset, load_source
from ...data.config import DataConfig
from ...engine import resolve_device, seed_everything
from ...engine.loop import accuracy, epoch_batches, update
from ...engine.optim import warmup_cosine
from ...engine.stage import Stage, run_stage
from ...errors import ConfigError
from ...models import create_model
from ...ssl.teacher import Teacher


@dataclasses.dataclass
class SqueezeConfig:
    """``ssdd squeeze``: a linear classifier on the frozen teacher backbone.

    YAML (configs/scdd/squeeze_<source>.yaml)::

        data: {name: cifar100, root: /data}
        teacher: runs/cifar100/teacher.safetensors
        epochs: 200
        lr: 0.06
        output: runs/cifar100/squeeze.safetensors
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train_per_class: int | None = None    # a seeded class-balanced subset of the source (CPU budgets)
    test_split: str | None = "test"       # where the stored accuracy is measured; null: none
    teacher: str = ""
    epochs: int = 200
    batch_size: int = 256
    lr: float = 0.06
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    output: str | None = "runs/${.data.name}/squeeze.safetensors"   # null: in memory (Python API)
    checkpoint_every: int = 1000          # steps
    log_every: int = 100

    def validate(self):
        from ...engine.device import amp_mode
        if not self.teacher:
            raise ConfigError("squeeze needs a teacher", fix="pass teacher=path/to/teacher.safetensors (ssdd teacher)")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs, batch_size and lr must be positive")
        if self.output is not None and not self.output.endswith(".safetensors"):
            raise ConfigError(f"output '{self.output}' must end in .safetensors")
        amp_mode(self.amp)


def classifier_from_backbone(teacher: Teacher, head: torch.nn.Linear, src: ImageSet, meta: dict) -> Classifier:
    """A Classifier: the teacher's network (same weights and BatchNorm buffers) with ``head`` as its head."""
    model = create_model(teacher.arch, out_dim=src.num_classes, image_size=teacher.image_size,
                         in_chans=teacher.channels, mean=teacher.meta["mean"], std=teacher.meta["std"])
    model.load_state_dict({**teacher.model.state_dict(), "head.weight": head.weight.detach().cpu(),
                           "head.bias": head.bias.detach().cpu()}, strict=True)
    full = {"arch": teacher.arch, "num_classes": src.num_classes, "classes": list(src.classes),
            "image_size": teacher.image_size, "channels": teacher.channels, "mean": list(teacher.meta["mean"]),
            "std": list(teacher.meta["std"]), "source": src.name, "split": src.split, "teacher": teacher.id,
            "teacher_ssl": teacher.meta.get("ssl"), "backbone": "frozen", **meta}
    return Classifier(model.eval().to(head.weight.device), full)


class SqueezeStage(Stage):
    """One SGD step of the linear head on cached backbone features per stage step."""

    name = "squeeze"

    def __init__(self, cfg: SqueezeConfig, src: ImageSet, feats: torch.Tensor, teacher: Teacher,
                 test: ImageSet | None, device):
        self.cfg, self.src, self.feats, self.teacher, self.test, self.device = cfg, src, feats, teacher, test, device
        self.batches = epoch_batches(len(src), cfg.batch_size, device, cpu_perm=True)
        self.steps = self.batches.steps_per_epoch * cfg.epochs
        self.t0 = time.time()

    def setup(self, fresh: bool = True) -> None:
        self.head = torch.nn.Linear(self.feats.shape[1], self.src.num_classes).to(self.device)
        self.opt = torch.optim.SGD(self.head.parameters(), lr=self.cfg.lr, momentum=self.cfg.momentum,
                                   weight_decay=self.cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, warmup_cosine(self.steps))

    def step(self, i: int):
        idx = self.batches(i)
        loss = F.cross_entropy(self.head(self.feats[idx]), self.src.labels[idx])
        update(loss, self.opt, self.sched)
        return {"loss": loss.detach()}

    def state_dict(self) -> dict:
        return {"head": self.head.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                "batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.head.load_state_dict(state["head"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.batches.load_state_dict(state["batches"])

    def finish(self) -> Classifier:
        with torch.no_grad():
            train_acc = accuracy(self.head, self.feats, self.src.labels)
        meta = {"epochs": self.cfg.epochs, "train_acc": round(train_acc, 2), "source_images": len(self.src),
                "squeeze_seconds": round(time.time() - self.t0, 1), "config": to_dict(self.cfg)}
        clf = classifier_from_backbone(self.teacher, self.head, self.src, meta)
        if self.test is not None:
            clf.meta["test_acc"] = round(accuracy(clf.model, self.test, amp=self.cfg.amp), 2)
            clf.meta["test_split"] = self.test.split
        return clf.validate("classifier")


def run_squeeze(cfg: SqueezeConfig, resume: bool = False, stop_after: int | None = None, quiet: bool = False,
                source: ImageSet | None = None, teacher: Teacher | None = None, test: ImageSet | None = None,
                overwrite: bool = False):
    """Train the head as ``cfg`` says and write the classifier to ``cfg.output`` (None: keep it in
    memory). Returns the stage result (``.record`` is the Classifier, None when stopped early)."""
    cfg = resolved(cfg)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    src = (source if source is not None else load_source(cfg.data, cfg.train_per_class, device)).to(device)
    teacher = (teacher if teacher is not None else Teacher.load(cfg.teacher)).to(device)
    teacher.check_images(src.channels, src.image_size, f"{src.name}/{src.split}")
    if not src.labelled:
        raise ConfigError(f"squeeze trains a classifier on labels, but {src.name}/{src.split} has none",
                          fix="use a labelled source")
    if test is None and cfg.test_split and source is None:
        d = cfg.data
        test = load_dataset(d.name, d.root, cfg.test_split, d.image_size, device=device, cache=d.cache)
    if test is not None:
        test = test.to(device)
    if not quiet:
        print(f"squeeze: linear head on the frozen {teacher.describe()}, {src.name}/{src.split} "
              f"({len(src)} images, {src.num_classes} classes), {cfg.epochs} epochs", flush=True)
    feats = teacher.represent_cached(src)
    stage = SqueezeStage(cfg, src, feats, teacher, test, device)
    res = run_stage(stage, stage.steps, output=cfg.output or None, config=to_dict(cfg), resume=resume,
                    stop_after=stop_after, checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
                    desc="squeeze", what="linear-head loss", fix="lower lr", lines=not quiet, device=device,
                    overwrite=overwrite)
    return res


def squeeze_in_memory(teacher: Teacher, src: ImageSet, epochs: int = 200, lr: float = 0.06,
                      batch_size: int = 256, seed: int = 0) -> Classifier:
    """The squeeze stage without files (SC-DD when ``params.classifier`` is not given)."""
    cfg = SqueezeConfig(teacher="<in memory>", epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                        device=str(src.device), output=None, test_split=None)
    return run_squeeze(cfg, source=src, teacher=teacher, quiet=True).record


__all__ = ["SqueezeConfig", "SqueezeStage", "classifier_from_backbone", "run_squeeze", "squeeze_in_memory"]
