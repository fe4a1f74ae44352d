"""Boost: KRR-ST with bases, predefined views and approximation networks (Yu, Yao, Chiu, ICLR 2025).

No official code is public; this is a re-implementation from the paper, and every choice it leaves
open is a key of :class:`Config` with its default stated here and in docs/BENCHMARKS.md.

Boost is KRR-ST (``krr_st.py``: the same pool of models, real batches, kernel solve and outer
loop) with another parameterisation of the synthetic pairs (X_s, Y_s):

1. **Bases.** M images are combinations of U low-resolution image bases, upsampled bilinearly:
   ``X = up(A B)`` (A: M x U, B: U x C x h x w, pixel space); targets are combinations of V
   representation bases: ``Y = C T`` (C: M x V, T: V x D). Bases start as PCA of real images
   downsampled to h x h and of teacher representations: the mean plus the top principal directions,
   each scaled to RMS 1; coefficients start as the least-squares projection of M real images
   (``pca_images`` real images feed the PCA). ``factorize_images`` / ``factorize_targets`` turn
   either off (then X or Y is stored plainly, as in KRR-ST).
2. **Predefined views.** K fixed transforms (``views``, default rot90, rot180, rot270) of every
   image; the kernel regression and the pool train on all M (K + 1) pairs. No random augmentation
   on the synthetic side.
3. **Approximation networks.** A view's target code (C's row, or Y's row when targets are plain)
   is the base code plus a shift predicted by one tiny MLP per view,
   ``c_k = c + W2_k act(W1_k c + b1_k) + b2_k`` (hidden width ``net_hidden``). Only the MLPs are
   stored. They start from a short regression (``net_init_steps`` Adam steps) onto the teacher's
   codes of the transformed initial images. ``view_targets: stored`` keeps one learned code per
   view and image instead (the ablation without networks).

**The budget is a hard limit.** ``budget`` N counts image-equivalents of everything stored (bases,
coefficients, networks, labels; float32). The number of images is ``images`` or, when 0,
``images_ratio`` x N. U and V, when 0, split what is left after the networks in proportion to what
plain images and plain targets would cost (C S S : D), each basis costing its own size plus one
coefficient per image. A setting whose stored bytes exceed N image-equivalents is refused with the
numbers, before anything runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..distilled import (ACTIVATIONS, VIEW_NET_FIELDS, VIEW_TARGETS, VIEW_TRANSFORMS, DistilledSet, apply_view_networks,
                         expand_bases, view_images)
from ..engine.loop import update
from ..errors import ConfigError
from .base import register_method
from .krr_st import Config as KRRConfig
from .krr_st import KRRST

FLOAT = 4            # every learned tensor is stored as float32
LABEL = 8            # int64 labels (class-conditional sets)


@dataclass
class Config(KRRConfig):
    images: int = 0                    # M stored images; 0: images_ratio x budget
    images_ratio: float = 2.0
    factorize_images: bool = True
    factorize_targets: bool = True
    image_bases: int = 0               # U; 0: the automatic split (module docstring)
    target_bases: int = 0              # V; 0: the automatic split
    basis_size: int = 16               # h: image bases are h x h, upsampled to the source resolution
    pca_images: int = 5000             # real images the PCA initialisation reads
    views: list[str] = field(default_factory=lambda: ["rot90", "rot180", "rot270"])
    view_targets: str = "network"      # network: approximation MLPs | stored: one code per view and image
    net_hidden: int = 4
    net_activation: str = "relu"
    net_init_steps: int = 200          # Adam steps fitting the MLPs to the teacher's view codes at the start
    lr_images: float = 1.0e-3          # image bases and coefficients (or plain images)
    lr_targets: float = 1.0e-3         # representation bases and coefficients (or plain targets), stored view codes
    lr_nets: float = 1.0e-3
    # parameter: every tensor's Adam lr is the lr as given. pixel: each factor's lr is divided by how many terms
    # add up in the product (coefficients: by U or V; bases: by the mean sum of |coefficients| at the start), so a
    # step moves a pixel (normalised units) or a target dimension by about the lr, as in KRR-ST. At lr 1e-2 and
    # 60 CPU steps, parameter reached the lower outer loss (0.163 vs 0.188) but lets images leave [0, 1];
    # docs/BENCHMARKS.md section 15
    lr_scale: str = "parameter"

    def validate(self):
        super().validate()
        bad = [v for v in self.views if v not in VIEW_TRANSFORMS]
        if bad or len(set(self.views)) != len(self.views):
            raise ConfigError(f"params.views {self.views} must be distinct names from {list(VIEW_TRANSFORMS)}",
                              fix="e.g. views=[rot90,rot180,rot270], or views=[] for no predefined augmentation")
        if self.lr_scale not in ("pixel", "parameter"):
            raise ConfigError(f"params.lr_scale must be pixel or parameter, got '{self.lr_scale}'")
        if self.view_targets not in VIEW_TARGETS:
            raise ConfigError(f"params.view_targets must be one of {list(VIEW_TARGETS)}, got '{self.view_targets}'")
        if self.net_activation not in ACTIVATIONS:
            raise ConfigError(f"params.net_activation must be one of {sorted(ACTIVATIONS)}")
        for k in ("images", "image_bases", "target_bases", "net_init_steps"):
            if getattr(self, k) < 0:
                raise ConfigError(f"params.{k} must be >= 0, got {getattr(self, k)}")
        if self.basis_size < 1 or self.net_hidden < 1 or self.images_ratio <= 0 or self.pca_images < 2:
            raise ConfigError("params.basis_size, net_hidden, images_ratio must be positive and pca_images >= 2")


@dataclass
class Plan:
    """What a Boost set stores: sizes and the bytes of each part."""

    images: int
    image_bases: int      # 0: plain images
    target_bases: int     # 0: plain targets
    views: int
    parts: dict[str, int]
    budget_bytes: int

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self, image_bytes: int) -> str:
        rows = ", ".join(f"{k} {v / image_bytes:.2f}" for k, v in self.parts.items() if v)
        return (f"{self.images} images, U={self.image_bases or 'plain'}, V={self.target_bases or 'plain'}, "
                f"{self.views} extra view(s): {rows} image-equivalents; total {self.total / image_bytes:.2f} "
                f"of the budget {self.budget_bytes / image_bytes:.0f}")


def plan_storage(cfg: Config, budget: int, channels: int, size: int, dim: int, labelled: bool = False) -> Plan:
    """Sizes (M, U, V) for ``cfg`` under a budget of ``budget`` image-equivalents, and the exact stored bytes.
    Raises ConfigError, with the numbers, when the setting does not fit."""
    css, h = channels * size * size, min(cfg.basis_size, size)
    chh, k, hid = channels * h * h, len(cfg.views), cfg.net_hidden
    nets = bool(k) and cfg.view_targets == "network"
    m = cfg.images or max(1, round(cfg.images_ratio * budget))

    def image_floats(u: int) -> int:          # u = 0: plain images
        return u * chh + m * u if u else m * css

    def target_floats(v: int) -> int:         # v = 0: plain targets; the views' codes have v (or dim) entries
        p = v or dim
        views = k * (2 * hid * p + hid + p) if nets else k * m * p
        return (v * dim + m * v if v else m * dim) + views

    avail = budget * css - (m * LABEL // FLOAT if labelled else 0)      # floats
    u = cfg.image_bases if cfg.factorize_images else 0
    v = cfg.target_bases if cfg.factorize_targets else 0
    auto_u, auto_v = cfg.factorize_images and u == 0, cfg.factorize_targets and v == 0
    if auto_u:   # with V automatic too, images get the share C S S / (C S S + D) of the budget
        room = avail * css / (css + dim) if auto_v else avail - target_floats(v)
        u = min(chh, max(1, math.floor(room / (chh + m))))   # 1 when nothing fits: refused below, with numbers
    if auto_v:   # target_floats is linear in v: c0 + v c1
        c0 = k * hid if nets else 0
        c1 = dim + m + (k * (2 * hid + 1) if nets else k * m)
        v = min(dim, max(1, math.floor((avail - image_floats(u) - c0) / c1)))
    if u > chh:
        raise ConfigError(f"params.image_bases={u} exceeds the {chh} values of a {h} x {h} basis",
                          fix=f"use at most {chh} image bases, or a larger basis_size")
    if v > dim:
        raise ConfigError(f"params.target_bases={v} exceeds the teacher's {dim} dimensions", fix=f"use at most {dim}")
    p = v or dim
    parts = {"images": 0 if u else m * css, "image bases": u * chh, "image coefficients": m * u,
             "targets": 0 if v else m * dim, "representation bases": v * dim, "representation coefficients": m * v,
             "approximation networks": k * (2 * hid * p + hid + p) if nets else 0,
             "view targets (stored)": k * m * p if k and not nets else 0}
    parts = {name: f * FLOAT for name, f in parts.items()}
    parts["labels"] = m * LABEL if labelled else 0
    plan = Plan(m, u, v, k, parts, budget * css * FLOAT)
    if plan.total > plan.budget_bytes:
        raise ConfigError(f"this Boost setting stores {plan.total / (css * FLOAT):.2f} image-equivalents, more than "
                          f"the budget N={budget}: {plan.describe(css * FLOAT)}",
                          fix="raise budget, or lower params.images / images_ratio / image_bases / target_bases / "
                              "net_hidden (networks on plain targets cost 2 x net_hidden x D floats per view)")
    return plan


def pca_bases(x: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` bases of the rows of x (n x P): the mean and the top count-1 principal directions, each
    scaled to RMS 1 (so coefficients and bases have comparable scales for Adam)."""
    mu = x.mean(0, keepdim=True)
    rank = min(count - 1, x.shape[0] - 1, x.shape[1])
    dirs = torch.linalg.svd(x - mu, full_matrices=False).Vh[:rank] if rank > 0 else x.new_zeros(0, x.shape[1])
    b = torch.cat([mu, dirs])
    if b.shape[0] < count:  # more bases than the data has directions: fill with seeded small noise
        g = torch.Generator().manual_seed(0)
        b = torch.cat([b, 1e-2 * torch.randn(count - b.shape[0], x.shape[1], generator=g).to(x)])
    return b / b.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-8)


def project(x: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """Least-squares coefficients of the rows of x (n x P) on ``bases`` (U x P): n x U."""
    return torch.linalg.lstsq(bases.T.double(), x.T.double()).solution.T.to(x.dtype)


@register_method
class Boost(KRRST):
    name = "boost"
    Config = Config
    default_steps = 160_000
    factorised = True
    paper_scale_params = ("pool_arch", "pool_size", "pool_steps", "real_batch")
    tiny_params = {**KRRST.tiny_params, "basis_size": 8, "pca_images": 64, "net_init_steps": 5}

    def __init__(self, cfg: Config, ctx):
        super().__init__(cfg, ctx)
        src = ctx.source
        dim = ctx.teacher.dim if ctx.teacher is not None else 1
        self.plan = plan_storage(cfg, ctx.budget, src.channels, src.image_size, dim, labelled=ctx.class_conditional)
        self.h = min(cfg.basis_size, src.image_size)
        if ctx.verbose:
            print(f"  Boost stores {self.plan.describe(src.channels * src.image_size ** 2 * FLOAT)}", flush=True)

    # ------------------------------------------------------------------ the synthetic set
    def num_images(self) -> int:
        return self.plan.images

    def init_synthetic(self, idx: torch.Tensor) -> list[dict]:
        ctx, cfg, plan = self.ctx, self.cfg, self.plan
        src, dev = ctx.source, ctx.device
        size = src.image_size
        g = torch.Generator().manual_seed(ctx.seed + 1)
        pca_idx = torch.randperm(len(src), generator=g)[: min(cfg.pca_images, len(src))].to(src.device)
        x0 = src.float(idx)
        groups = []
        if plan.image_bases:
            real = F.interpolate(src.float(pca_idx), size=(self.h, self.h), mode="area").flatten(1)
            self.b_img = pca_bases(real, plan.image_bases).view(-1, src.channels, self.h, self.h).requires_grad_(True)
            low = F.interpolate(x0, size=(self.h, self.h), mode="area").flatten(1)
            self.a_img = project(low, self.b_img.detach().flatten(1)).requires_grad_(True)
            lr_b, lr_a = self._factor_lrs(cfg.lr_images, self.a_img, unit=float(self.std.mean()))
            groups += [dict(params=[self.b_img], lr=lr_b), dict(params=[self.a_img], lr=lr_a)]
            x0 = expand_bases(self.a_img.detach(), self.b_img.detach(), size)
        else:
            self.x = ((x0 - self.mean) / self.std).clone().requires_grad_(True)
            groups.append(dict(params=[self.x], lr=cfg.lr_images))
        teacher = ctx.teacher
        y0 = teacher.encode(x0)
        if plan.target_bases:
            reps = torch.cat([teacher.encode(src.float(i)) for i in pca_idx.split(512)])
            self.t_b = pca_bases(reps, plan.target_bases).requires_grad_(True)
            self.t_c = project(y0, self.t_b.detach()).requires_grad_(True)
            lr_b, lr_c = self._factor_lrs(cfg.lr_targets, self.t_c)
            groups += [dict(params=[self.t_b], lr=lr_b), dict(params=[self.t_c], lr=lr_c)]
        else:
            self.y = y0.clone().requires_grad_(True)
            groups.append(dict(params=[self.y], lr=cfg.lr_targets))
        if cfg.views:
            # the teacher's codes of each transformed initial image: what each view's target starts from
            with torch.no_grad():
                want = torch.stack([self._code_of(teacher.encode(t)) for t in view_images(x0, cfg.views).split(len(x0))[1:]])
            if cfg.view_targets == "stored":
                self.v_codes = want.clone().requires_grad_(True)
                groups.append(dict(params=[self.v_codes], lr=self._code_lr(cfg.lr_targets)))
            else:
                self._init_networks(want, dev)
                groups.append(dict(params=self._nets(), lr=self._code_lr(cfg.lr_nets)))
        return groups

    def _factor_lrs(self, lr: float, coeffs: torch.Tensor, unit: float = 1.0) -> tuple[float, float]:
        """(bases lr, coefficients lr) for a product ``coeffs @ bases`` whose entries should move by about
        ``lr x unit`` per step (unit: the pixel size of one normalised unit for images)."""
        if self.cfg.lr_scale == "parameter":
            return lr, lr
        mass = float(coeffs.detach().abs().sum(1).mean().clamp_min(1e-6))
        return lr * unit / mass, lr * unit / coeffs.shape[1]

    def _code_lr(self, lr: float) -> float:
        """A code (coefficient vector) moves V terms of the target at once."""
        return lr / self.plan.target_bases if self.cfg.lr_scale == "pixel" and self.plan.target_bases else lr

    def _code_of(self, y: torch.Tensor) -> torch.Tensor:
        return project(y, self.t_b.detach()) if self.plan.target_bases else y

    def _base_code(self) -> torch.Tensor:
        return self.t_c if self.plan.target_bases else self.y

    def _decode(self, code: torch.Tensor) -> torch.Tensor:
        return code @ self.t_b if self.plan.target_bases else code

    def _nets(self) -> list[torch.Tensor]:
        return [self.w1, self.b1, self.w2, self.b2]

    def _init_networks(self, want: torch.Tensor, dev) -> None:
        """One MLP per view; W1 ~ N(0, 1/P), the rest zero, then ``net_init_steps`` Adam steps of MSE onto ``want``."""
        cfg = self.cfg
        k, _, p = want.shape
        g = torch.Generator().manual_seed(self.ctx.seed + 2)
        self.w1 = (torch.randn(k, cfg.net_hidden, p, generator=g) / math.sqrt(p)).to(dev).requires_grad_(True)
        self.b1 = torch.zeros(k, cfg.net_hidden, device=dev, requires_grad=True)
        self.w2 = torch.zeros(k, p, cfg.net_hidden, device=dev, requires_grad=True)
        self.b2 = torch.zeros(k, p, device=dev, requires_grad=True)
        if cfg.net_init_steps:
            code = self._base_code().detach()
            opt = torch.optim.Adam(self._nets(), lr=1e-2)
            for _ in range(cfg.net_init_steps):
                update(F.mse_loss(apply_view_networks(code, *self._nets(), cfg.net_activation), want), opt)

    def view_codes(self) -> torch.Tensor:
        """K x M x P: the code of every view."""
        if self.cfg.view_targets == "stored":
            return self.v_codes
        return apply_view_networks(self._base_code(), *self._nets(), self.cfg.net_activation)

    def learnables(self) -> dict[str, torch.Tensor]:
        out = {"b_img": self.b_img, "a_img": self.a_img} if self.plan.image_bases else {"x": self.x}
        out.update({"t_b": self.t_b, "t_c": self.t_c} if self.plan.target_bases else {"y": self.y})
        if self.cfg.views:
            out.update({"v_codes": self.v_codes} if self.cfg.view_targets == "stored"
                       else dict(zip(("w1", "b1", "w2", "b2"), self._nets())))
        return out

    def images_normalised(self) -> torch.Tensor:
        if self.plan.image_bases:
            return (expand_bases(self.a_img, self.b_img, self.ctx.source.image_size) - self.mean) / self.std
        return self.x

    def synthetic(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images_normalised()
        y = self._decode(self._base_code())
        if not self.cfg.views:
            return x, y
        # per-channel normalisation commutes with rotations and flips, so views of normalised images are exact
        ys = [y] + [self._decode(c) for c in self.view_codes()]
        return view_images(x, self.cfg.views), torch.cat(ys)

    def export(self) -> DistilledSet:
        cfg, plan = self.cfg, self.plan
        kw: dict = {"labels": self.labels}
        if plan.image_bases:
            kw.update(image_bases=self.b_img.detach().float(), image_coeffs=self.a_img.detach().float())
        else:
            kw["images"] = (self.x.detach() * self.std + self.mean).float()
        if plan.target_bases:
            kw.update(target_bases=self.t_b.detach().float(), target_coeffs=self.t_c.detach().float())
        else:
            kw["targets"] = self.y.detach().float()
        meta = {"boost": {"images": plan.images, "image_bases": plan.image_bases, "target_bases": plan.target_bases,
                          "basis_size": self.h}, "init_indices": self.init_indices}
        if cfg.views:
            meta["views"] = {"transforms": list(cfg.views), "targets": cfg.view_targets,
                             "activation": cfg.net_activation}
            if cfg.view_targets == "stored":
                kw["view_codes"] = self.v_codes.detach().float()
            else:
                kw.update({k: t.detach().float() for k, t in zip(VIEW_NET_FIELDS, self._nets())})
        return DistilledSet(**kw, meta=meta)
