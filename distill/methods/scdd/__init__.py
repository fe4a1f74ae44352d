"""SC-DD's recover: class-conditional images from noise by BatchNorm-statistics matching (Zhou, Yin,
Shao, Shen, "A Good Compression Is All You Need for Dataset Distillation").

The model is a :class:`~distill.classifier.Classifier`: a frozen self-supervised backbone with a
linear head (``ssdd squeeze``; or any classifier file, e.g. a supervised one to compare). Images are
optimised in the classifier's normalised space z = (x - mean) / std, for each image slot j and each
batch of classes (``class_batch``; all classes at once by default, as the reference does)::

    z ~ N(0, 1);  for t < T:  lr_t = lr * (1 + cos(pi t / T)) / 2      (Adam, betas (0.5, 0.9))
        z_j = roll(z, (dy, dx)),  dy, dx ~ U{0..jitter}   (+ flip / random resized crop when set)
        loss = CE(h(f(z_j)), y) + r_bn * sum_l w_l (||mu_l(z_j) - mu_l||_2 + ||var_l(z_j) - var_l||_2)
        z <- clip(z) to the normalised image of [0, 1]

where mu_l / var_l are the batch mean and (biased) variance of BatchNorm layer l's input over
(N, H, W), the right-hand side its running statistics, w_1 = ``first_bn_multiplier`` (10) and 1
for the others. The last iterate is kept and stored losslessly (float32) with its labels and the
classifier's logits on it (``soft_labels``, for the protocol's stored-soft-labels variant).

The run's ``steps`` are the iterations per batch (the paper's 1000); the stage runs
``batches x steps`` steps. Each batch draws its noise and jitter from its own generator, seeded by
(seed, batch), so batches are independent: ``workers`` / ``worker`` split them over processes,
each writing a part that ``ssdd merge`` joins into the set one process would have written.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...distilled import DistilledSet
from ...engine.device import autocast
from ...engine.loop import batched_forward, update
from ...models.record import weights_id
from ...errors import ConfigError, DataError
from ..base import DistillContext, Method, register_method


class BNStatsLoss:
    """Forward hooks on every BatchNorm layer of ``model``; after a forward pass, :meth:`loss` is
    ``sum_l w_l (||mu_l - running_mean_l||_2 + ||var_l - running_var_l||_2)`` over the inputs the
    layers saw (mean and biased variance over every dimension but the channel), with
    ``w = [first_multiplier, 1, 1, ...]``. Computed in fp32."""

    def __init__(self, model: nn.Module, first_multiplier: float = 10.0):
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not self.layers:
            raise ConfigError("SC-DD matches BatchNorm statistics, but the classifier's network has no BatchNorm layer",
                              fix="squeeze a teacher whose backbone uses BatchNorm (e.g. convnet-...-bn, resnet18)")
        for m in self.layers:
            if m.running_mean is None or m.running_var is None:
                raise ConfigError("a BatchNorm layer of the classifier keeps no running statistics")
        self.weights = [float(first_multiplier)] + [1.0] * (len(self.layers) - 1)
        self.terms: list[torch.Tensor | None] = [None] * len(self.layers)
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]

    def _hook(self, i: int):
        def hook(module, inputs, output):
            x = inputs[0].float()
            dims = [d for d in range(x.dim()) if d != 1]
            mu = x.mean(dims)
            var = x.var(dims, unbiased=False)
            self.terms[i] = (torch.linalg.vector_norm(mu - module.running_mean.float())
                             + torch.linalg.vector_norm(var - module.running_var.float()))
        return hook

    def loss(self) -> torch.Tensor:
        if any(t is None for t in self.terms):
            raise RuntimeError("BNStatsLoss.loss() before a forward pass through every BatchNorm layer")
        out = sum(w * t for w, t in zip(self.weights, self.terms))
        self.terms = [None] * len(self.layers)
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def jitter(z: torch.Tensor, gen: torch.Generator, shift: int, flip: bool,
           crop_scale: list[float] | None) -> torch.Tensor:
    """The recover step's augmentation of the whole batch: a random roll by (dy, dx) in {0..shift}^2,
    then (when set) a horizontal flip with probability 1/2 and one random resized crop."""
    if crop_scale:
        size = z.shape[-1]
        area = float(torch.empty(()).uniform_(crop_scale[0], crop_scale[1], generator=gen))
        logr = float(torch.empty(()).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen))
        w = max(1, min(size, round(size * math.sqrt(area * math.exp(logr)))))
        h = max(1, min(size, round(size * math.sqrt(area / math.exp(logr)))))
        top = int(torch.randint(0, size - h + 1, (1,), generator=gen))
        left = int(torch.randint(0, size - w + 1, (1,), generator=gen))
        z = F.interpolate(z[..., top:top + h, left:left + w], size=(size, size), mode="bilinear", align_corners=False)
    dy, dx = (int(v) for v in torch.randint(0, shift + 1, (2,), generator=gen))
    z = torch.roll(z, shifts=(dy, dx), dims=(2, 3))
    if flip and bool(torch.rand((), generator=gen) < 0.5):
        z = z.flip(3)
    return z


@dataclass
class Config:
    classifier: str = ""                  # Classifier file (ssdd squeeze); empty: squeeze the teacher in memory
    squeeze_epochs: int = 200             # the in-memory squeeze (when classifier is empty)
    squeeze_lr: float = 0.06
    lr: float = 0.4                       # Adam, cosine to 0 (CIFAR-100 0.4, Tiny 0.6, ImageNet 0.25)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    r_bn: float = 0.005                   # CIFAR 0.005, ImageNet 0.01
    first_bn_multiplier: float = 10.0
    jitter: int = 4                       # roll by 0..jitter px (4 at 32 px, 32 at 224 px)
    flip: bool = False                    # ImageNet scale: true
    crop_scale: list[float] | None = None  # ImageNet scale: [0.08, 1.0] (one random resized crop per batch)
    class_batch: int = 0                  # classes per batch; 0: all
    soft_labels: bool = True              # store the classifier's logits on the final images
    worker: int = 0                       # this process recovers batches b with b % workers == worker
    workers: int = 1


@register_method
class SCDD(Method):
    name = "scdd"
    Config = Config
    default_steps = 1000
    needs_teacher = False                 # with params.classifier set, no teacher is read
    uses_classifier = True
    tiny_params = {"class_batch": 5, "squeeze_epochs": 2, "lr": 0.1}
    resume_mutable = ()
    splits_work = True

    @classmethod
    def merge(cls, parts: list[DistilledSet], where: list[str]) -> DistilledSet:
        return merge_parts(parts, where)

    def __init__(self, cfg: Config, ctx: DistillContext):
        super().__init__(cfg, ctx)
        src = ctx.source
        if not src.labelled:
            raise DataError(f"SC-DD recovers class-conditional images, but {src.name}/{src.split} has no labels")
        c = src.num_classes
        if ctx.budget % c:
            raise ConfigError(f"SC-DD's budget is images per class x classes: {ctx.budget} is not a multiple of the "
                              f"{c} classes of {src.name}", fix=f"budget={max(1, ctx.budget // c) * c} "
                                                               f"(IPC {max(1, ctx.budget // c)})")
        if not (cfg.workers >= 1 and 0 <= cfg.worker < cfg.workers):
            raise ConfigError(f"worker {cfg.worker} of {cfg.workers}: need 0 <= worker < workers")
        if cfg.crop_scale is not None and not (len(cfg.crop_scale) == 2 and 0 < cfg.crop_scale[0] <= cfg.crop_scale[1] <= 1):
            raise ConfigError(f"crop_scale must be [min, max] within (0, 1], got {cfg.crop_scale}")
        self.ipc = ctx.budget // c
        per = cfg.class_batch if cfg.class_batch > 0 else c
        chunks = [list(range(k, min(k + per, c))) for k in range(0, c, per)]
        #: batch b = (slot j, classes); b enumerates slots first, then class chunks
        self.batches = [(j, q) for j in range(self.ipc) for q in chunks]
        self.mine = [b for b in range(len(self.batches)) if b % cfg.workers == cfg.worker]
        if not self.mine:
            raise ConfigError(f"worker {cfg.worker} of {cfg.workers} has no batch to recover: the run has "
                              f"{len(self.batches)} (IPC {self.ipc} x {len(chunks)} class batch(es))",
                              fix=f"use at most {len(self.batches)} workers, or a smaller params.class_batch")

    def total_steps(self) -> int:
        return len(self.mine) * self.ctx.steps

    # ------------------------------------------------------------------ state
    def setup(self, fresh: bool = True) -> None:
        ctx, cfg = self.ctx, self.cfg
        self.clf = self._classifier()
        net = self.clf.model.to(ctx.device).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net
        self.clf_id = weights_id(net.state_dict())
        self.bn = BNStatsLoss(net, cfg.first_bn_multiplier)
        self.mean, self.std = net.mean.clone(), net.std.clone()
        self.lo, self.hi = (0 - self.mean) / self.std, (1 - self.mean) / self.std
        src = ctx.source
        self.images = torch.zeros(ctx.budget, src.channels, src.image_size, src.image_size, device=ctx.device)
        self.done = torch.zeros(ctx.budget, dtype=torch.bool, device=ctx.device)
        self.z: torch.Tensor | None = None
        self.opt: torch.optim.Adam | None = None
        self.gen = torch.Generator()
        self.current = -1

    def _classifier(self):
        from ...classifier import Classifier
        ctx, cfg = self.ctx, self.cfg
        src = ctx.source
        if cfg.classifier:
            clf = Classifier.load(cfg.classifier)
            if (clf.channels, clf.image_size) != (src.channels, src.image_size):
                raise DataError(f"classifier {cfg.classifier} takes {clf.channels}x{clf.image_size}px images, "
                                f"{src.name} is {src.channels}x{src.image_size}px")
            if clf.num_classes != src.num_classes:
                raise DataError(f"classifier {cfg.classifier} has {clf.num_classes} classes, {src.name} has "
                                f"{src.num_classes}", fix="squeeze a classifier on this source (ssdd squeeze)")
            self.clf_path = str(cfg.classifier)
            return clf
        if ctx.teacher is None:
            raise ConfigError("SC-DD needs a classifier (params.classifier, made by `ssdd squeeze`) or a teacher "
                              "to squeeze one from", fix="set params.classifier=... or teacher=...")
        from .squeeze import squeeze_in_memory
        if ctx.verbose:
            print(f"scdd: squeezing a linear head on the frozen teacher ({cfg.squeeze_epochs} epochs)", flush=True)
        self.clf_path = None
        return squeeze_in_memory(ctx.teacher, src, epochs=cfg.squeeze_epochs, lr=cfg.squeeze_lr, seed=ctx.seed)

    def slots(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image indices in the set, class labels) of batch b; image i = class * ipc + slot."""
        j, classes = self.batches[b]
        y = torch.tensor(classes, dtype=torch.long, device=self.ctx.device)
        return y * self.ipc + j, y

    def _start(self, b: int) -> None:
        cfg, src = self.cfg, self.ctx.source
        self.current = b
        self.gen.manual_seed(self.ctx.seed * 1_000_003 + b)
        n = len(self.batches[b][1])
        z = torch.randn(n, src.channels, src.image_size, src.image_size, generator=self.gen)
        self.z = z.to(self.ctx.device).requires_grad_(True)
        self.opt = torch.optim.Adam([self.z], lr=cfg.lr, betas=tuple(cfg.betas), eps=1e-8)

    def step(self, i: int) -> dict[str, torch.Tensor]:
        cfg, iters = self.cfg, self.ctx.steps
        b, t = self.mine[i // iters], i % iters
        if t == 0 or self.current != b:
            self._start(b)
        for g in self.opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * t / iters))
        idx, y = self.slots(b)
        zj = jitter(self.z, self.gen, cfg.jitter, cfg.flip, cfg.crop_scale)
        with autocast(self.ctx.device, self.ctx.amp):
            out = self.net.head(self.net.body(zj))
        ce = F.cross_entropy(out.float(), y)
        bn = self.bn.loss()
        loss = ce + cfg.r_bn * bn
        update(loss, self.opt, inputs=[self.z])
        with torch.no_grad():
            self.z.copy_(torch.maximum(torch.minimum(self.z, self.hi), self.lo))
            if t == iters - 1:   # the batch is done: keep its last iterate in pixel space
                self.images[idx] = (self.z * self.std + self.mean).clamp(0, 1)
                self.done[idx] = True
        return {"loss": loss.detach(), "ce": ce.detach(), "bn": bn.detach()}

    def export(self) -> DistilledSet:
        images, keep = self.images.clone(), self.done.clone()
        if not keep.any() and self.z is not None:   # a snapshot before the first batch ends: the batch as it stands
            idx, _ = self.slots(self.current)
            images[idx] = (self.z.detach() * self.std + self.mean).clamp(0, 1)
            keep[idx] = True
        order = torch.nonzero(keep).flatten()
        images = images[order]
        labels = torch.div(order, self.ipc, rounding_mode="floor")
        soft = batched_forward(self.net, images, self.ctx.amp) if self.cfg.soft_labels else None
        meta = {"ipc": self.ipc, "classifier": self.clf_path, "classifier_id": self.clf_id,
                "classifier_test_acc": self.clf.meta.get("test_acc"), "classifier_teacher": self.clf.meta.get("teacher")}
        if self.cfg.workers > 1:
            meta["part"] = {"worker": self.cfg.worker, "workers": self.cfg.workers, "index": order.cpu().tolist(),
                            "budget": self.ctx.budget}
        return DistilledSet(images=images, labels=labels, soft_labels=soft, meta=meta)

    def state_dict(self) -> dict:
        state = {"images": self.images, "done": self.done, "current": torch.tensor(self.current),
                 "gen": self.gen.get_state()}
        if self.z is not None:
            state.update(z=self.z.detach(), opt=self.opt.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        dev = self.ctx.device
        self.images = state["images"].to(dev)
        self.done = state["done"].to(dev)
        self.current = int(state["current"])
        self.gen.set_state(state["gen"])
        if state.get("z") is not None:
            self.z = state["z"].to(dev).clone().requires_grad_(True)
            self.opt = torch.optim.Adam([self.z], lr=self.cfg.lr, betas=tuple(self.cfg.betas), eps=1e-8)
            self.opt.load_state_dict(state["opt"])


def merge_parts(parts: list[DistilledSet], where: list[str] | None = None) -> DistilledSet:
    """Join the parts that ``workers`` SC-DD processes wrote into the set one process writes: every
    part made by the same config but ``worker``, every slot exactly once."""
    where = where or [f"part {k}" for k in range(len(parts))]
    info = [p.meta.get("part") for p in parts]
    for w, i in zip(where, info):
        if not i:
            raise DataError(f"{w} is not a part of a split SC-DD run (no 'part' in its header)",
                            fix="merge the files written with params.workers > 1")
    first = parts[0]
    ignore = ("params.worker",)

    def key(p):
        from ...engine.configdiff import flatten
        return {k: v for k, v in flatten(p.meta.get("config") or {}).items() if k not in ignore and k != "output"}
    for p, w in zip(parts[1:], where[1:]):
        if key(p) != key(first):
            diff = sorted(k for k in set(key(p)) | set(key(first)) if key(p).get(k) != key(first).get(k))
            raise DataError(f"{w} was made by another config than {where[0]} (differs in {', '.join(diff)})")
    workers = info[0]["workers"]
    seen = sorted(i["worker"] for i in info)
    if seen != list(range(workers)):
        raise DataError(f"the parts are workers {seen}, the run had {workers}", fix="pass every worker's file once")
    budget = info[0]["budget"]
    index = torch.tensor([k for i in info for k in i["index"]], dtype=torch.long)
    if sorted(index.tolist()) != list(range(budget)):
        raise DataError("the parts do not cover every image slot exactly once (a worker stopped early?)",
                        fix="finish every worker's run (--resume) before merging")
    order = torch.argsort(index)

    def cat(name: str):
        if getattr(first, name) is None:
            return None
        return torch.cat([getattr(p, name) for p in parts])[order]
    meta = {k: v for k, v in first.meta.items() if k != "part"}
    meta["config"] = {**meta.get("config", {}), "params": {**meta.get("config", {}).get("params", {}), "worker": 0,
                                                           "workers": workers}}
    meta["distill_seconds"] = round(sum(float(p.meta.get("distill_seconds", 0)) for p in parts), 1)
    return DistilledSet(images=cat("images"), labels=cat("labels"), soft_labels=cat("soft_labels"), meta=meta)


__all__ = ["BNStatsLoss", "SCDD", "jitter", "merge_parts"]
