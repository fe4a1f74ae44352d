"""The evaluation building blocks: pre-train on a set, fine-tune, linear probe, accuracy.

All loops index GPU-resident tensors directly (no DataLoader) and never look at a test split
before the end: there is no checkpoint selection on test accuracy.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import FinetuneConfig, LinearConfig, PretrainConfig
from ..data import ImageSet, label_subset
from ..data.augment import CropFlip
from ..distilled import Materialized
from ..engine.device import autocast
from ..engine.optim import param_groups, warmup_cosine
from ..engine.progress import progress
from ..errors import ConfigError, NumericalError
from ..models import Net


def pretrain_loss_kind(cfg: PretrainConfig, m: Materialized) -> str:
    kind = cfg.loss
    if kind == "auto":
        kind = "mse" if m.targets is not None else "ce" if m.labels is not None else "kl"
    need = {"mse": m.targets, "ce": m.labels, "kl": m.soft_labels}[kind]
    if need is None:
        what = {"mse": "targets", "ce": "labels"}.get(kind, "soft labels")
        raise ConfigError(f"pre-training loss '{kind}' needs {what}, "
                          "which this set does not have")
    return kind


def pretrain_on_set(model: Net, m: Materialized, cfg: PretrainConfig, device: torch.device, amp: bool = True,
                    desc: str = "pre-train") -> dict:
    """Train ``model`` on the set; its head is replaced to fit the targets. Returns loss history."""
    kind = pretrain_loss_kind(cfg, m)
    x = m.images.to(device).float()
    y = {"mse": m.targets, "ce": m.labels, "kl": m.soft_labels}[kind].to(device)
    out_dim = y.shape[1] if kind in ("mse", "kl") else int(y.max()) + 1
    model.reset_head(out_dim)
    model.to(device).train()
    lr = cfg.lr if cfg.lr is not None else (m.lr if m.lr is not None else 0.1)
    bs = min(cfg.batch_size, len(x))
    steps_per_epoch = math.ceil(len(x) / bs)
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.SGD(param_groups([model], cfg.weight_decay), lr=lr, momentum=cfg.momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total) if cfg.schedule == "cosine" else (lambda s: 1.0))
    aug = CropFlip(x.shape[-1]) if cfg.augment else None
    history = []
    bar = progress(range(cfg.epochs), desc=desc)
    for epoch in bar:
        perm = torch.randperm(len(x), device=device)
        total_loss = torch.zeros((), device=device)
        for i in range(0, len(x), bs):
            idx = perm[i:i + bs]
            xb = x[idx] if aug is None else aug(x[idx])
            with autocast(device, amp):
                out = model(xb)
            out = out.float()
            if kind == "mse":
                loss = F.mse_loss(out, y[idx].float())
            elif kind == "ce":
                loss = F.cross_entropy(out, y[idx])
            else:
                loss = F.kl_div(F.log_softmax(out, 1), F.softmax(y[idx].float(), 1), reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.detach()
        if epoch % 50 == 0 or epoch == cfg.epochs - 1:
            v = (total_loss / steps_per_epoch).item()
            if not math.isfinite(v):
                raise NumericalError(f"pre-training loss became {v} at epoch {epoch + 1}", fix="lower pretrain.lr")
            history.append({"epoch": epoch + 1, "loss": v})
            bar.set_postfix(loss=f"{v:.4g}")
    return {"loss_kind": kind, "history": history, "lr": lr}


@torch.no_grad()
def accuracy(model: Net, ds: ImageSet, batch_size: int = 1024, amp: bool = True) -> float:
    model.eval()
    correct = 0
    dev = ds.device
    for i in range(0, len(ds), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(ds)), device=dev)
        with autocast(dev, amp):
            pred = model(ds.float(idx)).argmax(1)
        correct += (pred == ds.labels[idx]).sum()
    return 100.0 * int(correct) / len(ds)


def finetune(model: Net, train: ImageSet, test: ImageSet, cfg: FinetuneConfig, iterations: int | None = None,
             amp: bool = True, desc: str = "fine-tune") -> float:
    """Fine-tune all of ``model`` with a fresh head; return test top-1 (%) at the end of training."""
    device = train.device
    iters = iterations or cfg.iterations
    model.reset_head(train.num_classes)
    model.to(device).train()
    opt = torch.optim.SGD(param_groups([model], cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(iters))
    aug = CropFlip(train.image_size) if cfg.augment else None
    bs = min(cfg.batch_size, len(train))
    bar = progress(range(iters), desc=desc)
    loss_acc = torch.zeros((), device=device)
    for it in bar:
        idx = torch.randint(0, len(train), (bs,), device=device)
        x = train.float(idx)
        if aug is not None:
            x = aug(x)
        with autocast(device, amp):
            out = model(x)
        loss = F.cross_entropy(out.float(), train.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_acc += loss.detach()
        if (it + 1) % 100 == 0:
            v = (loss_acc / 100).item()
            if not math.isfinite(v):
                raise NumericalError(f"fine-tuning loss became {v}", fix="lower finetune.lr")
            bar.set_postfix(loss=f"{v:.3f}")
            loss_acc.zero_()
    return accuracy(model, test, amp=amp)


@torch.no_grad()
def extract_features(model: Net, ds: ImageSet, batch_size: int = 1024, amp: bool = True,
                     desc: str = "features") -> torch.Tensor:
    model.eval()
    out = []
    for i in progress(range(0, len(ds), batch_size), desc=desc):
        idx = torch.arange(i, min(i + batch_size, len(ds)), device=ds.device)
        with autocast(ds.device, amp):
            out.append(model.embed(ds.float(idx)).float())
    return torch.cat(out)


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: LinearConfig) -> torch.nn.Linear:
    """A linear classifier on features: full-batch L-BFGS (strong Wolfe) or mini-batch SGD, with
    ``l2 * ||W||^2`` added to the mean cross-entropy."""
    lin = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    if cfg.solver == "lbfgs":
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=cfg.steps, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(lin(x), y) + cfg.l2 * lin.weight.pow(2).sum()
            loss.backward()
            return loss
        opt.step(closure)
    else:
        opt = torch.optim.SGD(lin.parameters(), lr=cfg.lr, momentum=0.9)
        total = cfg.steps * math.ceil(len(x) / cfg.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total))
        for _ in range(cfg.steps):
            perm = torch.randperm(len(x), device=x.device)
            for i in range(0, len(x), cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                loss = F.cross_entropy(lin(x[idx]), y[idx]) + cfg.l2 * lin.weight.pow(2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    return lin


def linear_probe(model: Net, train: ImageSet, test: ImageSet, cfg: LinearConfig, seed: int = 0,
                 amp: bool = True) -> dict[float, float]:
    """Test top-1 (%) of linear classifiers on frozen features, one per label fraction."""
    f_tr = extract_features(model, train, amp=amp, desc="probe features (train)")
    f_te = extract_features(model, test, amp=amp, desc="probe features (test)")
    results = {}
    for frac in cfg.label_fractions:
        idx = (torch.arange(len(train)) if frac >= 1 else label_subset(train.labels.cpu(), fraction=frac, seed=seed))
        idx = idx.to(f_tr.device)
        xs, ys = f_tr[idx], train.labels[idx]
        xt = f_te
        if cfg.standardize:
            mu, sd = xs.mean(0, keepdim=True), xs.std(0, keepdim=True).clamp_min(1e-6)
            xs, xt = (xs - mu) / sd, (f_te - mu) / sd
        with torch.enable_grad():
            lin = fit_linear(xs, ys, train.num_classes, cfg)
        with torch.no_grad():
            results[frac] = 100.0 * (lin(xt).argmax(1) == test.labels).float().mean().item()
    return results
