"""KRR-ST: kernel ridge regression on self-supervised targets (Lee et al., ICLR 2024).

Learnable: synthetic images X_s (N x C x H x W) and target representations Y_s (N x D).

Each outer step samples one model of a pool of ConvNets (eval mode), takes a real batch X_t with
crop+flip and its teacher targets Y_t, builds features F = [phi(x), 1] for both, and fits kernel
ridge regression on the synthetic pairs:

    K_ss = F_s F_s^T,  K_ts = F_t F_s^T,  lambda = ridge * trace(K_ss)  (detached)
    Y_hat = K_ts (K_ss + lambda I)^-1 Y_s            (Cholesky solve, fp32)
    loss  = MSE(Y_hat, Y_t)

AdamW updates X_s and Y_s (lr decays linearly to ``final_lr_ratio`` x). The sampled model then takes
one full-batch MSE step on the detached (X_s, Y_s); after ``pool_steps`` such steps it is
re-initialised and its counter reset (``legacy_pool_reset: true`` keeps the reference code's
behaviour: a model serves its outer step with up to ``pool_steps`` steps, is re-initialised, and its
counter is never reset, so once a slot has aged it is a fresh random network at every visit, with no
SGD step spent on a model about to be discarded). At the start every model is trained for a random number of steps in
[1, pool_steps) so the pool spans training stages.

Under ``torchrun`` every rank holds the same pool and synthetic set (same seeds) and both sides of
the step are sharded: the real batch is drawn alike on every rank and each rank encodes its shard;
each rank computes the features of its shard of the synthetic set, which are gathered (with
gradients) for the kernel; each rank back-propagates its share of the loss, and the synthetic
tensors' gradients are averaged over ranks before AdamW steps. The pool models' own steps are
data-parallel over the synthetic set too (SyncBatchNorm, gradients averaged). Per step that is a
gather of N x P features, an all-reduce of the set's gradients and one of a pool model's.

The images are optimised in normalised space (so the paper's learning rates apply unchanged) and
exported in [0, 1] pixel space with the source's mean/std in the header.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.augment import CropFlip
from ..distilled import DistilledSet
from ..engine import dist
from ..engine.device import autocast, channels_last
from ..engine.loop import fit, update
from ..engine.optim import linear_decay
from ..errors import ConfigError, NumericalError
from ..models import create_model
from .base import DistillContext, Method, register_method


@dataclass
class Config:
    pool_arch: str = "convnet-128-256-512-bn"
    pool_size: int = 10
    pool_steps: int = 1000            # a pool model's lifetime in full-batch steps
    pool_lr: float = 0.1
    pool_momentum: float = 0.9
    pool_weight_decay: float = 1e-3
    legacy_pool_reset: bool = False
    real_batch: int = 1024
    augment_real: bool = True         # random crop (padding) + flip on the real batch
    crop_padding: int = 4
    lr_images: float = 1e-4
    lr_targets: float = 1e-4
    weight_decay: float = 0.0
    final_lr_ratio: float = 1e-3
    ridge: float = 1e-6               # lambda = ridge * trace(K_ss)

    def validate(self):
        from ..models import check_model
        check_model(self.pool_arch, "params.pool_arch")


def krr_predict(f_s: torch.Tensor, f_t: torch.Tensor, y_s: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Kernel ridge regression with a linear kernel on features with a bias column.

    f_s: N x P (synthetic features), f_t: B x P (query features), y_s: N x D. Returns B x D:
    ``K_ts (K_ss + lambda I)^-1 y_s`` with ``lambda = ridge * trace(K_ss)`` (detached), in fp32.
    """
    f_s = torch.cat([f_s.float(), f_s.new_ones(f_s.shape[0], 1, dtype=torch.float32)], 1)
    f_t = torch.cat([f_t.float(), f_t.new_ones(f_t.shape[0], 1, dtype=torch.float32)], 1)
    k_ss = f_s @ f_s.T
    k_ts = f_t @ f_s.T
    lam = ridge * torch.trace(k_ss).detach()
    eye = torch.eye(k_ss.shape[0], device=k_ss.device, dtype=k_ss.dtype)
    chol, info = torch.linalg.cholesky_ex(k_ss + lam * eye)
    if int(info) != 0:  # numerically indefinite: retry with a larger ridge
        chol, info = torch.linalg.cholesky_ex(k_ss + (lam * 100 + 1e-6) * eye)
        if int(info) != 0:
            raise NumericalError("the kernel matrix is not positive definite even with extra ridge",
                                 fix="raise params.ridge or check the synthetic images for NaN")
    alpha = torch.cholesky_solve(y_s.float(), chol)
    return k_ts @ alpha


@register_method
class KRRST(Method):
    name = "krr_st"
    Config = Config
    default_steps = 160_000
    paper_scale_params = ("pool_arch", "pool_size", "pool_steps", "real_batch")
    tiny_params = {"pool_arch": "convnet-d2-w8-bn", "pool_size": 2, "pool_steps": 3, "real_batch": 32}

    def __init__(self, cfg: Config, ctx: DistillContext):
        super().__init__(cfg, ctx)
        src = ctx.source
        self.mean = torch.tensor(src.mean, device=ctx.device).view(1, -1, 1, 1)
        self.std = torch.tensor(src.std, device=ctx.device).view(1, -1, 1, 1)
        self.augment = CropFlip(src.image_size, cfg.crop_padding) if cfg.augment_real else None
        self.gen = torch.Generator().manual_seed(ctx.seed)  # pool sampling and pool ages

    # ------------------------------------------------------------------ pool
    def _new_model(self):
        src = self.ctx.source
        m = create_model(self.cfg.pool_arch, out_dim=self.ctx.teacher.dim, image_size=src.image_size,
                         in_chans=src.channels).to(self.ctx.device)
        m = channels_last(m, self.ctx.device, self.ctx.amp)
        m = dist.convert_sync_batchnorm(m, self.ctx.device)    # under torchrun: BN over the whole synthetic set
        opt = torch.optim.SGD(m.parameters(), lr=self.cfg.pool_lr, momentum=self.cfg.pool_momentum,
                              weight_decay=self.cfg.pool_weight_decay)
        return m, opt

    def _pool_step(self, i: int) -> torch.Tensor:
        """One full-batch MSE step of pool model i on the detached synthetic set (under torchrun: each rank
        its shard of the set, BatchNorm over the whole set, gradients averaged)."""
        m, opt = self.models[i], self.opts[i]
        m.train()
        with torch.no_grad():
            x_s, y_s = self.synthetic()
        part = dist.shard(len(x_s))
        with autocast(self.ctx.device, self.ctx.amp):
            out = m.embed(x_s[part])
            out = m.head(out)
        loss = F.mse_loss(out.float(), y_s[part]) * (len(out) * dist.world_size() / len(x_s))
        update(loss, opt, sync=list(m.parameters()))
        return loss.detach()          # this rank's share (the warm-up's log averages the shares)

    def _reinit(self, i: int) -> None:
        self.models[i], self.opts[i] = self._new_model()

    # ------------------------------------------------------------------ the synthetic set (Boost overrides these)
    def num_images(self) -> int:
        """How many synthetic images (KRR-ST: the budget)."""
        return self.ctx.budget

    def init_synthetic(self, idx: torch.Tensor) -> list[dict]:
        """Create the learnable tensors from the real images ``idx``; return AdamW parameter groups."""
        x0 = self.ctx.source.float(idx)
        self.x = ((x0 - self.mean) / self.std).clone().requires_grad_(True)
        self.y = self.ctx.teacher.encode(x0).clone().requires_grad_(True)
        return [dict(params=[self.x], lr=self.cfg.lr_images), dict(params=[self.y], lr=self.cfg.lr_targets)]

    def learnables(self) -> dict[str, torch.Tensor]:
        """Every tensor the outer loop learns, by name (checkpointed, updated by AdamW)."""
        return {"x": self.x, "y": self.y}

    def synthetic(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(X_s in normalised space, Y_s): the pairs the kernel regression and the pool train on."""
        return self.x, self.y

    # ------------------------------------------------------------------ method
    def setup(self, fresh: bool = True) -> None:
        ctx, cfg = self.ctx, self.cfg
        src = ctx.source
        w = dist.world_size()
        if min(cfg.real_batch, len(src), self.num_images()) < w:
            raise ConfigError(f"{w} processes each need a share of the real batch ({min(cfg.real_batch, len(src))}) "
                              f"and of the {self.num_images()} synthetic images", fix=f"use at most "
                              f"{min(cfg.real_batch, len(src), self.num_images())} processes")
        idx = ctx.initial_indices(self.gen, self.num_images())
        self.init_indices = idx.cpu().tolist()     # the source images it starts from (matched starts, audits)
        self.labels = src.labels[idx].clone() if ctx.class_conditional else None
        groups = self.init_synthetic(idx)
        self.opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, linear_decay(max(1, ctx.steps), cfg.final_lr_ratio))
        self.models, self.opts = [], []
        for _ in range(cfg.pool_size):
            m, o = self._new_model()
            self.models.append(m)
            self.opts.append(o)
        self.ages = [0] * cfg.pool_size
        if fresh and cfg.pool_steps > 1:
            self.ages = [int(torch.randint(1, cfg.pool_steps, (1,), generator=self.gen)) for _ in range(cfg.pool_size)]
            plan = [i for i in range(cfg.pool_size) for _ in range(self.ages[i])]
            if ctx.verbose:
                print(f"  KRR-ST pool warm-up: {len(plan)} full-batch steps of {cfg.pool_arch} over {cfg.pool_size} "
                      f"models (ages 1..{cfg.pool_steps - 1}, so the pool spans training stages)", flush=True)
            fit(lambda j: dist.all_reduce_mean(self._pool_step(plan[j])), len(plan), desc="KRR-ST pool warm-up", what="pool model MSE",
                fix="lower params.pool_lr", log_every=max(1, len(plan) // 20), lines=ctx.verbose,
                estimate_after=min(10, len(plan)) if ctx.verbose else 0)

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's shard of a real batch (pixel space, augmented) and its teacher targets. The
        global batch and its augmentation are drawn on every rank alike (replicated streams)."""
        src = self.ctx.source
        b = min(self.cfg.real_batch, len(src))
        idx = torch.randperm(len(src), device=src.device)[:b]
        x = src.float(idx)
        if self.augment is not None:
            x = self.augment(x)
        x = x[dist.shard(b)]
        return x, self.ctx.teacher.encode(x)

    def step(self, step: int) -> dict[str, torch.Tensor]:
        cfg, ctx = self.cfg, self.ctx
        i = int(torch.randint(0, cfg.pool_size, (1,), generator=self.gen))
        model = self.models[i].eval()
        x_t, y_t = self.real_batch()
        with torch.no_grad(), autocast(ctx.device, ctx.amp):
            f_t = model.body((x_t - self.mean) / self.std)
        x_s, y_s = self.synthetic()
        with autocast(ctx.device, ctx.amp):
            f_s = model.body(x_s[dist.shard(len(x_s))])
        f_s = dist.all_gather(f_s.float(), grad=True, total=len(x_s))     # every rank's rows of the synthetic side
        y_hat = krr_predict(f_s, f_t, y_s, cfg.ridge)
        # this rank's share of the global batch's MSE (x 1 in one process): averaged over ranks, the shares
        # and their gradients are the global batch's
        loss = F.mse_loss(y_hat, y_t) * (len(y_t) * dist.world_size() / min(cfg.real_batch, len(ctx.source)))
        # gradients for the synthetic images and targets only: the pool model's weight gradients would be
        # computed and thrown away (its own step below starts from zeroed gradients)
        learn = list(self.learnables().values())
        update(loss, self.opt, self.sched, inputs=learn, sync=learn)
        # the pool model moves on by one step, and is renewed at the end of its life
        if cfg.legacy_pool_reset and self.ages[i] >= cfg.pool_steps:
            # the reference code: a model that has had its pool_steps steps serves one outer step, is then
            # re-initialised without a wasted step, and its counter is never reset, so from then on every
            # visit finds a fresh random network
            self._reinit(i)
        else:
            self._pool_step(i)
            self.ages[i] += 1
            if not cfg.legacy_pool_reset and self.ages[i] >= cfg.pool_steps:
                self._reinit(i)
                self.ages[i] = 0
        return {"loss": dist.all_reduce_mean(loss.detach())}

    def export(self) -> DistilledSet:
        images = (self.x.detach() * self.std + self.mean).float()
        return DistilledSet(images=images, targets=self.y.detach().float(), labels=self.labels,
                            meta={"init_indices": self.init_indices})

    def state_dict(self) -> dict:
        return {**{k: t.detach() for k, t in self.learnables().items()}, "labels": self.labels, "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "models": [m.state_dict() for m in self.models],
                "opts": [o.state_dict() for o in self.opts], "ages": list(self.ages), "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        dev = self.ctx.device
        with torch.no_grad():
            for k, t in self.learnables().items():
                t.copy_(state[k].to(dev))
        self.labels = state["labels"].to(dev) if state.get("labels") is not None else None
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        for m, o, ms, os_ in zip(self.models, self.opts, state["models"], state["opts"]):
            m.load_state_dict(ms)
            o.load_state_dict(os_)
        self.ages = list(state["ages"])
        self.gen.set_state(state["gen"])
